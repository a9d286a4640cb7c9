"""The prompt check: each logged context is the one lm-eval builds from the installed task pack (few-shot
examples, then the rendered prompt, through the run's chat template, as plain text or chat turns)."""
from __future__ import annotations

from typing import Any

from sde_tasks.board.installed import fewshot_docs
from sde_tasks.board.samples import doc_ids

# How lm-eval joins a few-shot context (the task pack's _default_template_yaml sets both).
TARGET_DELIMITER, FEWSHOT_DELIMITER = "", "\n\n"


def logged_context(sample: dict[str, Any]) -> str | None:
    """The text lm-eval sent to the model for a generate_until sample (dict or older list form)."""
    arguments = sample.get("arguments")
    if isinstance(arguments, dict) and len(arguments) == 1:
        (first,) = arguments.values()
        context = first.get("arg_0") if isinstance(first, dict) else None
    elif isinstance(arguments, list) and len(arguments) == 1 and isinstance(arguments[0], list) and arguments[0]:
        context = arguments[0][0]
    else:
        context = None
    return context if isinstance(context, str) else None


def expected_context(prompt: str, examples: list[dict[str, Any]], chat: dict[str, Any] | None) -> str:
    """The context lm-eval builds: few-shot examples then the prompt, as plain text or as chat turns."""
    if chat is None:
        shots = "".join(e["prompt"] + TARGET_DELIMITER + e["completion"] + FEWSHOT_DELIMITER for e in examples)
        return shots + prompt
    from transformers.utils.chat_template_utils import render_jinja_template

    if chat["multiturn"]:
        messages = [turn for e in examples for turn in (
            {"role": "user", "content": e["prompt"]},
            {"role": "assistant", "content": TARGET_DELIMITER + e["completion"]})]
        messages.append({"role": "user", "content": prompt})
    else:
        messages = [{"role": "user", "content": expected_context(prompt, examples, None)}]
    rendered, _ = render_jinja_template([messages], chat_template=chat["template"], add_generation_prompt=True,
                                        **chat["tokens"])
    return rendered[0]


def chat_settings(results: dict[str, Any], task: str, failures: list[str]) -> tuple[bool, dict[str, Any] | None]:
    """(readable, the run's chat template settings or None when it used none)."""
    if results.get("system_instruction") not in (None, ""):
        failures.append(f"task {task}: the run used a system instruction; the board compares designs by their "
                        "prompts alone, so run lm_eval without --system_instruction")
        return False, None
    template = results.get("chat_template")
    if template is None:
        return True, None
    if not isinstance(template, str):
        failures.append("results.json: field 'chat_template': must be text or null")
        return False, None
    tokens = {}
    for name in ("bos_token", "eos_token"):
        value = results.get(f"tokenizer_{name}")
        tokens[name] = value[0] if isinstance(value, list) and value and isinstance(value[0], str) else None
    return True, {"template": template, "multiturn": results.get("fewshot_as_multiturn") is not False,
                  "tokens": tokens}


def prompt_failures(task: str, design: str, docs: tuple[dict[str, Any], ...], by_id: dict[int, dict[str, Any]],
                     n_shot: int, chat: dict[str, Any] | None) -> list[str]:
    """Documents whose logged context is not the one lm-eval builds from the installed task pack."""
    pool = fewshot_docs(task, design) if n_shot else ()
    wrong_count, edited, unrenderable = [], [], None
    for i, sample in sorted(by_id.items()):
        if not 0 <= i < len(docs):
            continue
        context = logged_context(sample)
        prompt = docs[i]["prompt"]
        if context is None or prompt not in context:
            edited.append(i)
            continue
        last = context.rindex(prompt)
        examples = sorted((context.find(e["prompt"]), k) for k, e in enumerate(pool) if e["prompt"] in context[:last])
        examples = [pool[k] for _, k in examples]
        if len(examples) != n_shot:
            wrong_count.append(i)
            continue
        try:
            expected = expected_context(prompt, examples, chat)
        except Exception as err:  # the run's own template: jinja raises anything  # noqa: BLE001
            unrenderable = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
            break
        if context != expected:
            edited.append(i)
    failures = []
    if unrenderable:
        failures.append(f"task {task}: the run's chat template cannot be re-rendered to check the prompts ({unrenderable})")
    if wrong_count:
        failures.append(f"task {task}: the results say {n_shot}-shot, but the logged contexts of these documents hold "
                        f"another number of dev examples: {doc_ids(wrong_count)}")
    if edited:
        failures.append(f"task {task}: the logged prompt (arguments) is not the prompt the task pack builds for "
                        f"documents {doc_ids(edited)}")
    return failures
