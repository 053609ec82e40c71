"""Bar plot of a benchmark document: per objects count, the per-frame and per-part medians of
every runner, with p90 as whiskers."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sam2_ros.backends.base import PART_NAMES

GROUPS = ("frame", *PART_NAMES)


def plot(document: dict[str, Any], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display needed
    import matplotlib.pyplot as plt

    runs = document["runs"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 3.2 * len(runs)), squeeze=False)
    for ax, run in zip(axes[:, 0], runs):
        names = list(run["runners"])
        width = 0.8 / max(len(names), 1)
        for k, name in enumerate(names):
            stats = run["runners"][name]
            per_group = [stats["frame_ms"] if g == "frame" else stats["parts_ms"].get(g) for g in GROUPS]
            xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(GROUPS))]
            medians = [s["median"] if s else 0.0 for s in per_group]
            whiskers = [s["p90"] - s["median"] if s else 0.0 for s in per_group]
            ax.bar(xs, medians, width, yerr=[[0.0] * len(whiskers), whiskers], capsize=2, label=name)
        ax.set_xticks(range(len(GROUPS)), GROUPS)
        ax.set_ylabel("ms per frame (median, p90)")
        ax.set_title(f"{run['objects']} object(s)")
        ax.legend(fontsize="small")
    settings, machine = document["settings"], document["machine"]
    fig.suptitle(
        f"SAM 2 {settings['model']} @ {settings['image_size']}px, {settings['dtype']}, "
        f"{machine['device_name']} ({settings['weights']})",
        fontsize="medium",
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
