"""Benchmarks of the streaming tracker against Meta's SAM 2 driven the same way, in one run.

    python -m sam2_ros.bench engine --model tiny --image-size 512 --frames 50 --objects 1,4
    python -m sam2_ros.bench backends --model tiny --image-size 512 --objects 1,4,16 --plot out.png

See `cli.py` for the options. Figures are per-frame latencies and their ratios against the
reference measured in the same process, interleaved frame by frame.
"""
