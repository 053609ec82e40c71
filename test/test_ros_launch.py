"""launch/sam2.launch.py: its decisions (pure) and `ros2 launch` run for real.

The process tests start `ros2 launch sam2_ros sam2.launch.py ...` as users do (the package is
found through AMENT_PREFIX_PATH, i.e. the colcon install), each in its own process group that
is killed on teardown, and check that no process of the group outlives the launch.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

from sam2_ros.ros import launch_setup  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RVIZ_CONFIG = ROOT / "config" / "sam2.rviz"
LAUNCH_TOOLS_SKIP = ("`ros2 launch` is not installed (launch_ros and ros2launch have no PyPI "
                     "wheels): set SAM2_ROS_VENDOR for scripts/setup.sh, or use a ROS 2 install")


def needs_ros2_launch() -> None:
    for module in ("launch_ros", "ros2launch"):
        pytest.importorskip(module, reason=LAUNCH_TOOLS_SKIP)
    if shutil.which("ros2") is None:
        pytest.skip(LAUNCH_TOOLS_SKIP)


def load_launch_file():
    spec = importlib.util.spec_from_file_location("sam2_launch",
                                                  ROOT / "launch" / "sam2.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Pure decisions ------------------------------------------------------------------------
def test_only_given_arguments_override_the_params_file() -> None:
    assert launch_setup.parameter_overrides({"model_size": "", "image_size": ""}) == {}
    assert launch_setup.parameter_overrides(
        {"model_size": "nano", "image_size": "128", "allow_random_weights": "true",
         "use_sim_time": "false", "checkpoint": "123", "image": "/cam"}) == {
        "model_size": "nano", "image_size": 128, "allow_random_weights": True,
        "use_sim_time": False, "checkpoint": "123"}  # a path stays a string


def test_bad_arguments_are_refused_with_every_problem_named() -> None:
    with pytest.raises(ValueError) as caught:
        launch_setup.parameter_overrides({"image_size": "big", "allow_random_weights": "yes"})
    message = str(caught.value)
    assert "image_size:='big': expected an integer" in message
    assert "allow_random_weights:='yes': expected true or false" in message
    with pytest.raises(ValueError, match="image_size=100: expected 64..2048"):
        launch_setup.parameter_overrides({"image_size": "100"})
    with pytest.raises(ValueError, match="dtype='float8'"):
        launch_setup.parameter_overrides({"dtype": "float8"})


def test_every_parameter_argument_is_described_and_unset_by_default() -> None:
    arguments = {a.name: a for a in launch_setup.parameter_arguments()}
    assert set(arguments) == {*launch_setup.PARAMETER_ARGUMENTS, "use_sim_time"}
    assert arguments["allow_random_weights"].choices == ("", "true", "false")
    assert arguments["dtype"].choices == ("", "float32", "float16", "bfloat16")
    assert arguments["model_size"].choices == ()  # the engine's sizes: checked by the node
    assert all(a.description.endswith("Unset: the params file's value.")
               for a in arguments.values())


def rviz_topics(text: str) -> list[str]:
    displays = yaml.safe_load(text)["Visualization Manager"]["Displays"]
    return [display["Topic"]["Value"] for display in displays if "Topic" in display]


@pytest.mark.parametrize("namespace, prefix", [("", "/sam2/"), ("robot1", "/robot1/sam2/"),
                                               ("/a/b/", "/a/b/sam2/")])
def test_rviz_config_follows_the_namespace(namespace, prefix) -> None:
    template = RVIZ_CONFIG.read_text()
    shipped = rviz_topics(template)
    assert {"/sam2/overlay", "/sam2/markers"} <= set(shipped)
    assert all(topic.startswith("/sam2/") for topic in shipped)  # all the node's
    moved = rviz_topics(launch_setup.rviz_config_for(template, namespace))
    assert moved == [prefix + topic.removeprefix("/sam2/") for topic in shipped]


def process_running(pid: int) -> bool:
    """Alive and not a zombie (an exited child waits as one until it is reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_exit_with_parent_stops_the_command_when_its_parent_dies() -> None:
    wrapped = ("import os, subprocess, sys, time; print(subprocess.Popen([sys.executable, '-m', "
               "'sam2_ros.ros.exit_with_parent', str(os.getpid()), 'sleep', '60'], "
               "stdout=subprocess.DEVNULL).pid, flush=True); time.sleep(1)")
    parent = subprocess.Popen([sys.executable, "-c", wrapped], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert process_running(child)
    parent.wait(timeout=30)
    deadline = time.monotonic() + 10
    while process_running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    running = process_running(child)
    if running:
        os.kill(child, signal.SIGKILL)
    assert not running, "the command outlived its parent"
    wrong_parent = subprocess.run([sys.executable, "-m", "sam2_ros.ros.exit_with_parent", "1",
                                   "true"], capture_output=True, text=True, timeout=30)
    assert wrong_parent.returncode == 1 and "parent 1 is gone" in wrong_parent.stderr


def test_launch_file_declares_every_argument() -> None:
    needs_ros2_launch()
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    description = load_launch_file().generate_launch_description()
    declared = {a.name: a for a in description.entities if isinstance(a, DeclareLaunchArgument)}
    assert set(declared) == {"image", "params_file", "namespace", "rviz", "rviz_config",
                             "cameras", *launch_setup.PARAMETER_ARGUMENTS, "use_sim_time"}
    assert declared["rviz"].choices == ["true", "false"]
    # Nothing starts until every argument is checked (one function builds the actions).
    assert isinstance(description.entities[-1], OpaqueFunction)


def test_rviz_starts_first_with_the_namespaced_config(tmp_path, monkeypatch) -> None:
    needs_ros2_launch()
    from launch import LaunchContext
    from launch.logging import launch_config
    from launch_ros.actions import Node

    fake = tmp_path / "rviz2_prefix"  # an ament prefix where rviz2 is "installed"
    (fake / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (fake / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").touch()
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{fake}:{os.environ.get('AMENT_PREFIX_PATH', '')}")
    monkeypatch.setattr(launch_config, "_log_dir", str(tmp_path))  # where the config goes
    context = LaunchContext()
    context.launch_configurations.update(
        {"rviz": "true", "namespace": "robot1", "rviz_config": str(RVIZ_CONFIG),
         "params_file": str(ROOT / "config" / "sam2.yaml"), "image": "/cam",
         "model_size": "nano", "launch-prefix": ""})
    actions = load_launch_file()._start(context)
    assert [a.node_executable for a in actions if isinstance(a, Node)] == ["rviz2", "sam2_node"]
    generated = rviz_topics((tmp_path / "sam2.rviz").read_text())
    assert "/robot1/sam2/overlay" in generated
    assert generated == [topic.replace("/sam2/", "/robot1/sam2/", 1)
                         for topic in rviz_topics(RVIZ_CONFIG.read_text())]


@pytest.mark.parametrize("cameras, params_file", [("front,rear", "sam2.yaml"),
                                                   ("", "sam2_cameras.yaml")])
def test_rviz_shows_each_camera_from_the_argument_or_the_params_file(
        tmp_path, monkeypatch, cameras, params_file) -> None:
    needs_ros2_launch()
    from launch import LaunchContext
    from launch.logging import launch_config

    fake = tmp_path / "rviz2_prefix"
    (fake / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (fake / "share" / "ament_index" / "resource_index" / "packages" / "rviz2").touch()
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{fake}:{os.environ.get('AMENT_PREFIX_PATH', '')}")
    monkeypatch.setattr(launch_config, "_log_dir", str(tmp_path))
    context = LaunchContext()
    context.launch_configurations.update(
        {"rviz": "true", "namespace": "robot1", "rviz_config": str(RVIZ_CONFIG),
         "params_file": str(ROOT / "config" / params_file), "image": "/cam",
         "cameras": cameras, "launch-prefix": ""})
    load_launch_file()._start(context)
    generated = rviz_topics((tmp_path / "sam2.rviz").read_text())
    assert {"/robot1/sam2/front/overlay", "/robot1/sam2/rear/overlay"} <= set(generated)
    assert "/robot1/sam2/overlay" not in generated
    context.launch_configurations["cameras"] = "front,9"
    with pytest.raises(ValueError, match="cameras\\[1\\]='9': expected a ROS name segment"):
        load_launch_file()._start(context)


# `ros2 launch` for real ----------------------------------------------------------------
class Launch:
    """`ros2 launch sam2_ros sam2.launch.py <arguments>` in its own process group."""

    def __init__(self, arguments: list[str], cwd: Path) -> None:
        self.log = cwd / "launch.log"
        self._log_file = self.log.open("w")
        self.process = subprocess.Popen(
            ["ros2", "launch", "sam2_ros", "sam2.launch.py", *arguments], cwd=cwd,
            stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True)
        self.group = self.process.pid  # start_new_session: the group id is its pid

    def output(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"ros2 launch still running after {timeout} s:\n"
                                 f"{self.output()}") from None

    def group_alive(self) -> bool:
        try:
            os.killpg(self.group, 0)
        except ProcessLookupError:
            return False
        return True

    def assert_nothing_left(self, timeout: float = 10.0) -> None:
        """Every process the launch started has ended (they share its process group)."""
        deadline = time.monotonic() + timeout
        while self.group_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not self.group_alive(), f"processes of the launch outlived it:\n{self.output()}"

    def close(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.group, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=20)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.group, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log_file.close()


@pytest.fixture
def launch(tmp_path):
    """Start launches (cwd: tmp_path, so the weights must come from the install); all are
    ended, with their process groups, on teardown."""
    needs_ros2_launch()
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    try:
        share = Path(get_package_share_directory("sam2_ros"))
    except PackageNotFoundError:
        pytest.skip("sam2_ros is not installed: run bash scripts/setup.sh and source "
                    "scripts/env.sh (AMENT_PREFIX_PATH must name its install)")
    assert (share / "launch" / "sam2.launch.py").is_file()
    started: list[Launch] = []

    def start(*arguments: str) -> Launch:
        started.append(Launch(list(arguments), tmp_path))
        return started[-1]

    yield start
    for each in started:
        each.close()


def ros2(*arguments: str, timeout: float = 30.0) -> str:
    """A `ros2` CLI command (no daemon: nothing left running; 3 s to discover the node, as
    0.5 s, the default, is not always enough here); its output."""
    result = subprocess.run(["ros2", *arguments, "--no-daemon", "--spin-time", "3"],
                            capture_output=True, text=True, timeout=timeout)
    return result.stdout + result.stderr


def wait_until_active(node: str, launch: Launch, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert launch.process.poll() is None, f"ros2 launch ended:\n{launch.output()}"
        if "active [3]" in ros2("lifecycle", "get", node):
            return
        time.sleep(0.5)
    raise AssertionError(f"{node} not active after {timeout} s:\n{launch.output()}")


def test_launch_runs_the_node_from_the_install_and_stops_on_sigint(launch) -> None:
    import rclpy
    from std_msgs.msg import Header

    from sam2_ros.ros.conversions import image_to_mask, mask_to_image
    from test_ros_node import Client, block_mask, mask_request, spinning

    namespace = f"launch_{uuid.uuid4().hex[:8]}"
    running = launch("model_size:=nano", "image_size:=128", f"namespace:={namespace}",
                     f"image:=/{namespace}/camera")
    node = f"/{namespace}/sam2"
    wait_until_active(node, running)
    # The bundled checkpoint came from the install (the launch runs in an empty folder).
    assert "share/sam2_ros/weights/sam2_nano.pt" in running.output()
    # Given arguments override the params file (model_size: tiny there); others keep it.
    assert "String value is: nano" in ros2("param", "get", node, "model_size")
    assert "Integer value is: 16" in ros2("param", "get", node, "max_objects")

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        client = Client(context, node_name=f"{namespace}/sam2", image_topic=f"/{namespace}/camera")
        with spinning(context, client.node):
            client.stream_until(lambda: client.masks, what="the launched node's first masks")
            reply = client.call(client.add_prompt,
                                mask_request(1, mask_to_image(block_mask(), header=Header())))
            assert reply.success, reply.message
            assert image_to_mask(reply.mask).any()
            now = client.sent[-1]
            client.stream_until(
                lambda: [m for m in client.masks if m.header.stamp.sec > now
                         and [o.object_id for o in m.masks] == [1]],
                what="a mask array with object 1")
    finally:
        rclpy.try_shutdown(context=context)

    os.killpg(running.group, signal.SIGINT)  # Ctrl-C: a terminal signals the whole group
    assert running.wait(timeout=30) == 0, running.output()
    running.assert_nothing_left()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_launch_leaves_no_node_behind(launch, signum) -> None:
    """SIGTERM and SIGKILL skip launch's own shutdown: the node must stop by itself."""
    namespace = f"killed_{uuid.uuid4().hex[:8]}"
    running = launch("model_size:=nano", "image_size:=128", f"namespace:={namespace}")
    wait_until_active(f"/{namespace}/sam2", running)
    os.kill(running.process.pid, signum)  # the launch process only, as `kill` or docker do
    running.wait(timeout=30)
    running.assert_nothing_left(timeout=30)


@pytest.mark.parametrize("argument, message", [
    ("rviz:=true", "rviz:=true but rviz2 is not installed"),
    ("rviz:=maybe", "Argument \"rviz\" provided value \"maybe\" is not valid"),
    ("params_file:=/nonexistent/sam2.yaml", "params_file '/nonexistent/sam2.yaml' does not exist"),
    ("image_size:=100", "image_size=100: expected 64..2048 in steps of 32"),
])
def test_bad_arguments_fail_before_the_node_starts(launch, argument, message) -> None:
    if argument == "rviz:=true" and shutil.which("rviz2") is not None:
        pytest.skip("rviz2 is installed here: this case needs a machine without it")
    # Otherwise startable; the argument comes last, and the last of duplicates wins.
    running = launch("allow_random_weights:=true", "image_size:=256", argument)
    assert running.wait(timeout=60) != 0
    output = running.output()
    assert message in output and "process started" not in output, output
    running.assert_nothing_left()


def test_a_configure_failure_ends_the_launch_non_zero(launch, tmp_path) -> None:
    missing = tmp_path / "no_such_checkpoint.pt"
    running = launch("model_size:=tiny", "image_size:=256", f"checkpoint:={missing}")
    assert running.wait(timeout=90) != 0
    output = running.output()
    assert f"checkpoint '{missing}'" in output, output  # the node said why
    assert "the sam2 node exited with status 1" in output, output
    running.assert_nothing_left()
