"""The benchmark document (JSON) and its printed summary."""
from __future__ import annotations

from typing import Any

from sam2_ros.bench.measure import StreamStats
from sam2_ros.bench.runners import Runner

RATIO_DEFINITION = "reference ms / ours ms per frame (> 1: ours is faster)"
CPU_NOTE = (
    "CPU run on a possibly shared machine: absolute times are only meaningful from a GPU; "
    "compare the ratios, measured interleaved frame by frame in one process"
)
MIB = 1 << 20


def run_entry(n_objects: int, stream: StreamStats, runners: list[Runner]) -> dict[str, Any]:
    entry: dict[str, Any] = {"objects": n_objects, "runners": {}}
    for runner in runners:
        stats = stream.runners[runner.name]
        entry["runners"][runner.name] = {
            **runner.describe(),
            "frame_ms": stats.frame_ms.to_json(),
            "fps": stats.frame_ms.fps,
            "parts_ms": {part: s.to_json() for part, s in stats.parts_ms.items()},
            "memory": {
                "held_bytes_after_warmup": stats.held_bytes_start,
                "held_bytes_at_end": stats.held_bytes_end,
                "cuda_step_peak_bytes": stats.cuda_step_peak_bytes,
            },
        }
    entry["memory"] = {
        "process_peak_rss_bytes": stream.peak_rss_bytes,
        "process_peak_rss_scope": stream.peak_rss_scope,
        "cuda_max_allocated_bytes": stream.cuda_max_allocated_bytes,
    }
    entry["ratios"] = ratios(entry["runners"])
    return entry


def ratios(runners: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every ours runner against every reference runner of the same stream."""
    ours = [n for n, r in runners.items() if r["kind"] == "ours"]
    refs = [n for n, r in runners.items() if r["kind"] == "reference"]
    out = []
    for o in ours:
        for ref in refs:
            a, b = runners[o]["frame_ms"], runners[ref]["frame_ms"]
            out.append({"ours": o, "reference": ref,
                        **{stat: b[stat] / a[stat] for stat in ("median", "p90", "p99")}})
    return out


def format_summary(document: dict[str, Any]) -> str:
    s, m = document["settings"], document["machine"]
    lines = [
        f"sam2_ros.bench {document['command']}: SAM {s['version']} {s['model']} @ {s['image_size']}px, "
        f"{s['device']} {s['dtype']}, {s['timed_frames']} timed frames after {s['warmup_frames']} warm-up",
        f"machine: {m['cpu']} x{m['cpu_cores']} (torch threads {m['torch_threads']}, load average "
        f"{m['load_average_1min']}), device {m['device_name']}; torch {m['packages'].get('torch')}",
        f"weights: {s['weights']}",
        f"frames: {s['frames']}",
    ]
    for name, status in document.get("backends", {}).items():
        if status["status"] != "ok":
            lines.append(f"{name}: {status['status']} ({status['detail']})")
    header = f"{'objects':>7}  {'runner':<28} {'median':>9} {'p90':>9} {'p99':>9} {'FPS':>7}  {'held MiB':>9}"
    for run in document["runs"]:
        lines += ["", header]
        for name, r in run["runners"].items():
            f = r["frame_ms"]
            lines.append(
                f"{run['objects']:>7}  {name:<28} {f['median']:>7.1f}ms {f['p90']:>7.1f}ms {f['p99']:>7.1f}ms "
                f"{r['fps']:>7.2f}  {r['memory']['held_bytes_at_end'] / MIB:>9.2f}"
            )
            if r["parts_ms"]:
                parts = ", ".join(f"{p} {v['median']:.1f}" for p, v in r["parts_ms"].items())
                lines.append(f"{'':>9}parts (median ms): {parts}")
        for ratio in run["ratios"]:
            lines.append(
                f"{'':>9}{ratio['reference']} / {ratio['ours']}: median {ratio['median']:.2f}x, "
                f"p90 {ratio['p90']:.2f}x, p99 {ratio['p99']:.2f}x"
            )
        mem = run["memory"]
        cuda = f", CUDA max allocated {mem['cuda_max_allocated_bytes'] / MIB:.0f} MiB" if mem["cuda_max_allocated_bytes"] else ""
        lines.append(f"{'':>9}process peak RSS {mem['process_peak_rss_bytes'] / MIB:.0f} MiB ({mem['process_peak_rss_scope']}){cuda}")
    for replay in document.get("replay", []):
        lines += ["", f"replay ({replay['runner']}, {replay['objects']} object(s), {replay['rounds']} rounds): "
                      "median ms of a prompt stamped k frames back vs tracking k frames live"]
        for depth, r in replay["depths"].items():
            live, again = r["live_ms"], r["replay_ms"]
            lines.append(
                f"{'':>9}k={depth:>3}: live {live['cache_off']['median']:.0f} / {live['cache_on']['median']:.0f}, replay "
                f"cache off {again['cache_off']['median']:.0f} ({r['replay_over_live_median']['cache_off']:.2f}x live), "
                f"cache on {again['cache_on']['median']:.0f} ({r['replay_over_live_median']['cache_on']:.2f}x live)"
            )
        cache = replay["cache"]
        lines.append(f"{'':>9}cache: {cache['held_bytes_at_end'] / MIB:.1f} MiB held of a {cache['budget_bytes'] / MIB:.1f} "
                     f"MiB budget ({cache['frames_held_at_end']} frames, {cache['hits']} hits)")
    for acc in document.get("accuracy", []):
        lines += ["", f"accuracy against {acc['against']} ({acc['video']}, {acc['objects']} object(s), "
                      f"{acc['frames']} frames):"]
        for name, r in acc["runners"].items():
            lines.append(f"{'':>9}{name:<28} mask IoU mean {r['mask_iou_mean']:.4f} min {r['mask_iou_min']:.4f}, "
                         f"logit error max {r['logit_max_abs_error_max']:.4f} mean {r['logit_mean_abs_error_mean']:.5f}")
    lines += [""] + [f"note: {note}" for note in document["notes"]]
    return "\n".join(lines)
