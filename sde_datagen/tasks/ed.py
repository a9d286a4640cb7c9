"""ED: event detection on MAVEN, restricted to the 10 event types of the SDE paper, as data."""

TYPES = ["Catastrophe", "Attack", "Hostile_encounter", "Causation", "Process_start",
         "Competition", "Motion", "Social_event", "Killing", "Conquering"]

SPEC = {
    "name": "ed",
    "family": "extraction",
    "language": "en",
    "targets": [{"name": t, "keywords": [t.lower()]} for t in TYPES],
    "instructions": [
        "Find the events of these types in the text: {targets}. For each event type, give the trigger words.",
        "Detect events in the following text. Event types: {targets}. Report the words that trigger each event.",
        "Which of these event types occur in the text, and which words trigger them? Types: {targets}.",
    ],
    "input_prefix": "Text: ",
    "json_keys": {"target": "event_type", "value": "triggers", "rationale": "rationale"},
    "rationale": {"absent": "No {target} event is mentioned.", "context": "clause"},
    "record": {"items": "events", "type": "type", "span": "trigger"},
    "splits": {"train": "train", "validation": "valid", "test": "test"},
    "card": {
        "pretty_name": "MAVEN event detection (10 SDE event types)",
        "language": "en",
        "license": "unknown",
        "license_note": "MAVEN states no license; its text comes from English Wikipedia.",
        "citation": (
            "@inproceedings{wang2020MAVEN, title={{MAVEN}: A Massive General Domain Event Detection Dataset}, "
            "author={Wang, Xiaozhi and Wang, Ziqi and Han, Xu and Jiang, Wangyi and Han, Rong and Liu, Zhiyuan and Li, "
            "Juanzi and Li, Peng and Lin, Yankai and Zhou, Jie}, booktitle={Proceedings of EMNLP 2020}, year={2020}}"
        ),
    },
}
