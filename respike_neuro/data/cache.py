"""Fill a decode-once frame cache (respike_neuro.data.frame_cache) for every split of a dataset.

    python -m respike_neuro.data.cache ucf101 /data/ucf101 /fast/cache --short-side 128
"""

from __future__ import annotations

import sys

from respike_neuro.cli import ArgumentParser
from respike_neuro.data.frame_cache import FrameCache
from respike_neuro.data.registry import build_dataset


def main(argv: list[str] | None = None) -> int:
    """CLI: fill a cache for every split of a registry dataset. Errors print one line, exit 1."""
    parser = ArgumentParser(
        prog="python -m respike_neuro.data.cache",
        description="Decode every video of a dataset once into a memory-mapped frame cache.")
    parser.add_argument("dataset", help="registry name: ucf101, hmdb51, kinetics400")
    parser.add_argument("root", help="dataset root directory (its official layout)")
    parser.add_argument("directory", help="cache directory (created if absent)")
    parser.add_argument("--short-side", type=int, default=128,
                        help="short side of cached frames (default 128)")
    parser.add_argument("--fold", type=int, default=1, help="official split fold (UCF-101/HMDB-51)")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="splits to cache")
    args = parser.parse_args(argv)
    try:
        cache = FrameCache(args.directory, short_side=args.short_side)
        for split in args.splits:
            ds = build_dataset(args.dataset, root=args.root, split=split, fold=args.fold, frames=1,
                               resolution=min(args.short_side, 112), mode="train", scan=False)
            counts = cache.build(r.path for r in ds.videos)
            print(f"{split}: {counts['built']} built, {counts['cached']} already cached, "
                  f"{counts['failed']} undecodable")
        print(f"cache {cache.directory}: {cache.nbytes() / 2**30:.2f} GiB")
    except (ValueError, TypeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
