"""Launch the SAM 2 tracking node on a camera topic, optionally with rviz.

    ros2 launch sam2_ros sam2.launch.py image:=/camera/color/image_raw
    ros2 launch sam2_ros sam2.launch.py params_file:=my.yaml rviz:=true
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("sam2_ros")
    arguments = [
        DeclareLaunchArgument("image", default_value="/camera/image_raw",
                              description="camera sensor_msgs/Image topic"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", "sam2.yaml"]),
                              description="node parameters (see config/sam2.yaml)"),
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument("rviz", default_value="false", description="start rviz2"),
        DeclareLaunchArgument("rviz_config",
                              default_value=PathJoinSubstitution([share, "config", "sam2.rviz"]),
                              description="rviz2 configuration"),
    ]
    node = Node(
        package="sam2_ros", executable="sam2_node", name="sam2",
        namespace=LaunchConfiguration("namespace"),
        parameters=[LaunchConfiguration("params_file")],
        remappings=[("image", LaunchConfiguration("image"))],
        output="screen", emulate_tty=True,
    )
    rviz = Node(
        package="rviz2", executable="rviz2", name="rviz2",
        arguments=["-d", LaunchConfiguration("rviz_config")],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription([*arguments, node, rviz])
