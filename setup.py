"""pip-installable form of the Python part of sam2_ros, for machines without colcon.

The ROS 2 build is CMakeLists.txt (ament_cmake + rosidl for msg/srv); colcon uses that and
ignores this file. `pip install -e .` gives the engine, backends, bench and console entry
points; the node additionally needs the generated `sam2_ros.msg`/`sam2_ros.srv` from colcon.
"""
from setuptools import find_packages, setup

setup(
    name="sam2_ros",
    version="0.1.0",
    description="Streaming SAM 2 video segmentation for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["sam2_ros", "sam2_ros.*"]),
    # A range, not a pin: GPU users bring their own CUDA build of torch.
    install_requires=["torch>=2.3", "numpy", "pillow", "pyyaml"],
    extras_require={
        "onnx": ["onnx", "onnxruntime", "onnxscript"],
        "bench": ["psutil", "matplotlib"],
    },
    entry_points={
        "console_scripts": [
            "sam2_node = sam2_ros.ros.node:main",
            "sam2_demo = sam2_ros.demo:main",
            "sam2_export = sam2_ros.export:main",
            "sam2_bench = sam2_ros.bench.cli:main",
        ]
    },
)
