"""NER: nested named-entity recognition on GENIA (DNA, RNA, protein, cell_line, cell_type), as data."""

SPEC = {
    "name": "ner",
    "family": "extraction",
    "language": "en",
    "targets": [{"name": t, "keywords": [t.lower()]} for t in ["DNA", "RNA", "protein", "cell_line", "cell_type"]],
    "instructions": [
        "Find the named entities of these types in the text: {targets}. Entities may be nested inside each other.",
        "Extract every {targets} mention from the following biomedical text, including nested mentions.",
        "List the entities in the text by type ({targets}); an entity may contain another.",
    ],
    "input_prefix": "Text: ",
    "json_keys": {"target": "entity_type", "value": "entities", "rationale": "rationale"},
    "rationale": {"absent": "No {target} entity is mentioned.", "context": "window"},
    "record": {"items": "entities", "type": "type", "span": "text"},
    "splits": {"train": "train", "validation": "dev", "test": "test"},
    "card": {
        "pretty_name": "GENIA nested NER (DNA, RNA, protein, cell_line, cell_type)",
        "language": "en",
        "license": "cc-by-3.0",
        "license_note": (
            "Corpus annotations (c) GENIA Project, Creative Commons Attribution 3.0 Unported; the abstracts come from "
            "PubMed and their use and distribution are subject to NLM/PubMed terms. See GENIA_LICENSE.txt."
        ),
        "citation": (
            "Kim, Ohta, Tateisi, Tsujii. GENIA corpus - a semantically annotated corpus for bio-textmining. "
            "Bioinformatics 19 (suppl. 1), 2003."
        ),
    },
}
