"""Data commands: ``make-synthetic`` and ``download``."""

from __future__ import annotations

from ondevice_rec.cli.common import EXIT_OK, add_command, add_output_dir


def register(commands) -> None:
    from ondevice_rec.data import download, synthetic
    defaults = synthetic.SyntheticConfig()
    syn = add_command(commands, "make-synthetic", "write a synthetic activity log (MovieLens layouts, an "
                                                  "e-commerce JSONL log, or a plain user,item CSV)",
                      "  ondevice-rec make-synthetic --format ml-1m --output-dir /tmp/synthetic --users 500 --items 400\n"
                      "  ondevice-rec make-synthetic --format ecommerce --output-dir /tmp/shop    # then: run --events "
                      "/tmp/shop/events.json\n"
                      "  ondevice-rec make-synthetic --shape large-catalogue --output-dir /tmp/big   # run --events "
                      "/tmp/big/events.json", cmd_make_synthetic)
    syn.add_argument("--format", choices=synthetic.FORMATS, help="the layout (required without --shape)")
    syn.add_argument("--shape", choices=sorted(synthetic.SHAPES),
                     help="a named kind of log with its own settings and layout: " + "; ".join(
                         f"{name}: {shape.about}" for name, shape in sorted(synthetic.SHAPES.items())))
    add_output_dir(syn, "the folder the log is written to", required=True)
    syn.add_argument("--users", type=int, help=f"default: {defaults.users} (a shape's own without --shape)")
    syn.add_argument("--items", type=int, help=f"default: {defaults.items}")
    syn.add_argument("--mean-ratings-per-user", type=int, help=f"default: {defaults.mean_ratings_per_user}")
    syn.add_argument("--seed", type=int, default=defaults.seed, help="default: %(default)s")
    syn.add_argument("--sparse-ids", action="store_true",
                     help="item ids spread up to 10^9 instead of 1..items (MovieLens layouts, plain)")

    dl = add_command(commands, "download", "download and verify a MovieLens archive",
                     "  ondevice-rec download ml-1m            # prints the unpacked folder, pass it as --data-dir",
                     cmd_download)
    dl.add_argument("name", choices=sorted(download.ARCHIVES))
    dl.add_argument("--cache-dir", default=None, help="default: $ONDEVICE_REC_CACHE or ~/.cache/ondevice-rec")


def cmd_make_synthetic(args) -> int:
    import dataclasses
    from ondevice_rec.data import synthetic
    if args.shape is None and args.format is None:
        raise ValueError("make-synthetic needs --format or --shape")
    shape = synthetic.SHAPES[args.shape] if args.shape else synthetic.Shape(synthetic.SyntheticConfig(), args.format)
    given = {"users": args.users, "items": args.items, "mean_ratings_per_user": args.mean_ratings_per_user}
    config = dataclasses.replace(shape.config, seed=args.seed, **{k: v for k, v in given.items() if v is not None})
    fmt = args.format or shape.fmt
    data = synthetic.generate(config)
    synthetic.write(data, args.output_dir, fmt, seed=args.seed, sparse_ids=args.sparse_ids,
                    categories=shape.categories and fmt == synthetic.PLAIN)
    print(f"wrote {len(data.user_id)} events by {config.users} users on {len(set(data.movie_id.tolist()))} "
          f"items ({fmt} layout) to {args.output_dir}")
    return EXIT_OK


def cmd_download(args) -> int:
    from ondevice_rec.data import download
    print(download.download(args.name, cache_dir=args.cache_dir, progress=download.print_progress))
    return EXIT_OK
