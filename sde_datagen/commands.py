"""`sde data export | designs | show`: the command line of sde_datagen."""
from __future__ import annotations

import argparse
from pathlib import Path

from sde_datagen.data import bundled_dir
from sde_datagen.design import AXES, DESIGN_SETS, OPTION_WORDS, PRESETS, resolve_design, resolve_designs
from sde_datagen.errors import UserError
from sde_datagen.flags import DESIGN_HELP, DESIGNS_HELP, INSTRUCTION_HELP, PRIVATE_HELP, PUSH_HELP, add_task_choice
from sde_datagen.tasks import load_task


def add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="render gold records into sample designs and export them")
    sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND")

    export = sub.add_parser("export", help="export design variants as a Hub-ready dataset repository")
    _task_args(export)
    export.add_argument("--designs", required=True, help=DESIGNS_HELP)
    export.add_argument("--train-size", type=int, help="train records sampled (default: every record)")
    export.add_argument("--seed", type=int, default=0, help="seed of the train sample (default 0)")
    export.add_argument("--instruction", type=int, default=0, help=INSTRUCTION_HELP)
    export.add_argument("--rationales", help="JSONL of {id, target, rationale} overriding the extractive rationales")
    export.add_argument("--splits", default="train,validation,test",
                        help="splits to export, comma-separated (default train,validation,test; each must be in --data)")
    export.add_argument("--out", required=True, help="folder of the dataset repository to write")
    export.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    export.add_argument("--push-to-hub", metavar="ORG/NAME", help=PUSH_HELP)
    export.add_argument("--private", action="store_true", help=PRIVATE_HELP)
    export.set_defaults(handler=_export)

    designs = sub.add_parser("designs", help="list design axes, presets and design sets")
    designs.set_defaults(handler=_designs)

    show = sub.add_parser("show", help="print rendered samples with their loss mask")
    _task_args(show)
    show.add_argument("--design", default="es-sde", help=f"{DESIGN_HELP} (default es-sde)")
    show.add_argument("--split", default="train", choices=["train", "validation", "test"],
                      help="the split to show samples of (default train)")
    show.add_argument("-n", type=int, default=2, help="number of samples (default 2)")
    show.add_argument("--instruction", type=int, default=0, help=INSTRUCTION_HELP)
    show.set_defaults(handler=_show)


def _task_args(parser: argparse.ArgumentParser) -> None:
    add_task_choice(parser)
    parser.add_argument("--domain", help="target subset, e.g. MASA D1 (default), D2, all, D1-paper")


def _load(args: argparse.Namespace):
    spec = load_task(args.task or args.task_spec, args.domain)
    if args.data:
        data = Path(args.data)
    elif args.task:
        data = bundled_dir(args.task)
    else:
        raise UserError("--task-spec needs --data DIR with the task's <split>.jsonl files")
    return spec, data


def _export(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_datagen.export import export_dataset, push_to_hub, read_splits
    from sde_datagen.rationale import load_overrides

    spec, data = _load(args)
    designs = resolve_designs(args.designs, spec.family)
    splits = read_splits(spec, data, args.train_size, args.seed, _split_names(args.splits))
    ids = {r.id for s in splits for r in s.records}
    overrides = load_overrides(args.rationales, spec, ids) if args.rationales else None
    note = f"Train split: {args.train_size} records sampled with seed {args.seed}." if args.train_size else ""
    counts = export_dataset(
        spec, designs, splits, args.out, instruction=args.instruction, overrides=overrides, overwrite=args.overwrite, note=note
    )
    rows = sum(sum(c.values()) for c in counts.values())
    print(f"wrote {len(counts)} configs, {rows} rows to {args.out}", flush=True)
    if args.push_to_hub:
        print(f"pushed to {push_to_hub(args.out, args.push_to_hub, args.private)}")
    return 0


def _split_names(value: str) -> tuple[str, ...]:
    from sde_datagen.export import SPLIT_FILES

    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    unknown = [n for n in names if n not in SPLIT_FILES]
    if unknown or not names:
        raise UserError(f"--splits {value}: choose from {', '.join(SPLIT_FILES)}")
    return names


def _designs(args: argparse.Namespace, extra: list[str]) -> int:
    print("Axes (a variant id names one option per axis, in this order):")
    for axis, options in AXES.items():
        print(f"  {axis:<12} " + "; ".join(f"{o} = {OPTION_WORDS[axis][o]}" for o in options))
    print("\nPresets:")
    for name, design in PRESETS.items():
        print(f"  {name:<11} {design.id}")
    print("\nDesign sets:")
    for name, make in DESIGN_SETS.items():
        print(f"  {name:<11} classification: {len(make('classification'))} designs, extraction: {len(make('extraction'))}")
    return 0


def _show(args: argparse.Namespace, extra: list[str]) -> int:
    from sde_datagen.export import read_splits
    from sde_datagen.render import render_sample

    if args.n < 1:
        raise UserError(f"-n {args.n}: give the number of samples to show (1 or more)")
    spec, data = _load(args)
    design = resolve_design(args.design, spec.family)
    (split,) = read_splits(spec, data, wanted=(args.split,))
    loss = "loss" if design.loss_on_prompt else "no loss"
    for i, record in enumerate(split.records[: args.n], start=1):
        sample = render_sample(spec, design, record, args.instruction)
        print(f"── sample {i}/{args.n} · {record.id} · {design.id} ".ljust(78, "─"))
        print(f"[prompt · {loss}]")
        print(sample.prompt, end="")
        print("[completion · loss, then EOS]")
        print(sample.completion)
    return 0
