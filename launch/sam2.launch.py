"""Launch the SAM 2 tracking node on a camera topic, optionally with rviz.

    ros2 launch sam2_ros sam2.launch.py image:=/camera/color/image_raw
    ros2 launch sam2_ros sam2.launch.py params_file:=my.yaml rviz:=true namespace:=robot1
    ros2 launch sam2_ros sam2.launch.py model_size:=nano image_size:=128   # bundled weights
    ros2 launch sam2_ros sam2.launch.py cameras:=front,rear rviz:=true     # one model, 2 cameras
    ros2 launch sam2_ros sam2.launch.py --show-args                        # every argument

Arguments are checked before anything starts (bad values, rviz:=true without rviz2).
Node parameters given here override the params file; unset ones leave it alone. The launch
ends when the node does and exits non-zero when the node failed (e.g. configure); Ctrl-C
stops everything and exits 0; the node and rviz also stop if `ros2 launch` is killed.
"""
import os
import shlex
import signal
import sys
from pathlib import Path

from ament_index_python.packages import PackageNotFoundError, get_package_prefix
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, OpaqueFunction
from launch.events import Shutdown
from launch.events.process import ProcessExited
from launch.logging import launch_config
from launch.substitutions import PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from sam2_ros.ros.launch_setup import (BOOLEAN, NODE_NAME, parameter_arguments,
                                       parameter_overrides, rviz_config_for)
from sam2_ros.ros.rviz_cameras import camera_rviz_config, params_file_cameras, parse_cameras


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("sam2_ros")
    arguments = [
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="camera sensor_msgs/Image topic"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", "sam2.yaml"]),
                              description="node parameters (see config/sam2.yaml)"),
        DeclareLaunchArgument("namespace", default_value="",
                              description="node namespace (rviz follows it)"),
        DeclareLaunchArgument("rviz", default_value="false", choices=list(BOOLEAN),
                              description="start rviz2 showing the overlay and markers"),
        DeclareLaunchArgument("rviz_config",
                              default_value=PathJoinSubstitution([share, "config", "sam2.rviz"]),
                              description="rviz2 configuration; its /sam2/... topics are moved "
                                          "under the namespace"),
        DeclareLaunchArgument("cameras", default_value="",
                              description="comma-separated camera names served by one model "
                                          "(e.g. front,rear): camera c reads c/image (or the "
                                          "params file's c.image_topic) and publishes "
                                          "/sam2/c/...; rviz shows each. Unset: the params "
                                          "file's cameras (none: one camera on image)"),
        *(DeclareLaunchArgument(a.name, default_value="", description=a.description,
                                choices=list(a.choices) or None)
          for a in parameter_arguments()),
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_start)])


def _start(context: LaunchContext) -> list:
    """Check everything, then start rviz (if asked) and the node; raising starts nothing."""
    values = context.launch_configurations
    overrides = parameter_overrides(values)
    if not Path(values["params_file"]).is_file():
        raise RuntimeError(f"params_file {values['params_file']!r} does not exist")
    cameras = parse_cameras(values.get("cameras", ""))
    if cameras:
        overrides["cameras"] = cameras
    prefix = _exit_with_launch(values)
    actions = []
    if values["rviz"] == "true":
        shown = cameras or params_file_cameras(Path(values["params_file"]))
        actions.append(_rviz(values["namespace"], Path(values["rviz_config"]), prefix, shown))
    parameters = [values["params_file"], *([overrides] if overrides else [])]
    actions.append(Node(
        package="sam2_ros", executable="sam2_node", name=NODE_NAME,
        namespace=values["namespace"], parameters=parameters,
        remappings=[("image", values["image"])], prefix=prefix,
        output="screen", emulate_tty=True, on_exit=_on_node_exit,
    ))
    return actions


def _exit_with_launch(values) -> str:
    """A prefix that stops a process if `ros2 launch` dies without stopping it (SIGTERM,
    SIGKILL), keeping any --launch-prefix the user gave (a prefix here replaces it)."""
    wrapper = f"{shlex.quote(sys.executable)} -m sam2_ros.ros.exit_with_parent {os.getpid()}"
    return f"{wrapper} {values.get('launch-prefix', '')}".strip()


def _rviz(namespace: str, template: Path, prefix: str, cameras: list[str]) -> Node:
    try:
        get_package_prefix("rviz2")
    except PackageNotFoundError as error:
        raise RuntimeError(f"rviz:=true but rviz2 is not installed ({error}); install it "
                           f"(e.g. apt install ros-$ROS_DISTRO-rviz2) or use rviz:=false") from None
    if not template.is_file():
        raise RuntimeError(f"rviz_config {str(template)!r} does not exist")
    # The launch's own log folder: one generated config per launch, kept with its logs.
    config = Path(launch_config.log_dir) / "sam2.rviz"
    per_camera = camera_rviz_config(template.read_text(), f"/{NODE_NAME}", cameras)
    config.write_text(rviz_config_for(per_camera, namespace))
    return Node(package="rviz2", executable="rviz2", name="rviz2", namespace=namespace,
                arguments=["-d", str(config)], prefix=prefix)


def _on_node_exit(event: ProcessExited, context: LaunchContext) -> list:
    """End the launch with the node; a failed node makes `ros2 launch` exit non-zero."""
    stopped_by_us = context.is_shutdown and event.returncode == -signal.SIGINT
    if event.returncode != 0 and not stopped_by_us:
        # launch has no API for its exit status: an exception is how it learns of a failure.
        raise RuntimeError(f"the {NODE_NAME} node exited with status {event.returncode}")
    return [EmitEvent(event=Shutdown(reason=f"the {NODE_NAME} node exited"))]
