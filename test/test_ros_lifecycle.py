"""The node as a standard ROS 2 component: lifecycle and parameter services answered by
real rclpy clients over DDS, through repeated cycles, with nothing leaked.

The node is built with `autostart: false`, as a lifecycle manager would find it.
"""
from __future__ import annotations

import ast
import gc
import inspect
import threading
import weakref

import psutil
import pytest

pytest.importorskip("sam2_ros.msg", reason="msg/srv not built: run bash scripts/setup.sh and "
                    "source scripts/env.sh")

import rclpy  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import (DescribeParameters, GetParameters, ListParameters,  # noqa: E402
                                SetParameters)
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from test_ros_node import (FRAMES, Client, block_mask, context, iou,  # noqa: E402,F401
                           mask_request, spinning, wait_for)

from sam2_ros.ros.conversions import array_to_image, image_to_mask, mask_to_image  # noqa: E402
from sam2_ros.ros.node import Sam2Node  # noqa: E402
from sam2_ros.ros.parameters import LIVE, NodeConfig  # noqa: E402
from sam2_ros.srv import RemoveObject  # noqa: E402


def small_node(context, name: str, *, namespace: str = "", **extra) -> Sam2Node:
    overrides = [Parameter("allow_random_weights", value=True),
                 Parameter("image_size", value=256), Parameter("autostart", value=False),
                 Parameter("diagnostics_period", value=0.2),
                 *(Parameter(key, value=value) for key, value in extra.items())]
    return Sam2Node(name, namespace=namespace, context=context, parameter_overrides=overrides)


def handles(node: Sam2Node) -> tuple[int, int, int, int]:
    """What the executor serves for the node, and our threads."""
    threads = sum(t.name == "sam2_worker" for t in threading.enumerate())
    return (len(list(node.publishers)), len(list(node.services)), len(list(node.timers)),
            threads)


def rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def assigned_attributes(cls: type) -> set[str]:
    """Names the class's own code assigns on `self` (self.x = ..., self.x += ...)."""
    tree = ast.parse(inspect.getsource(cls))
    names = set()
    for node in ast.walk(tree):
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign))
                   else [])
        for target in targets:
            for item in (target.elts if isinstance(target, ast.Tuple) else [target]):
                if (isinstance(item, ast.Attribute) and isinstance(item.value, ast.Name)
                        and item.value.id == "self"):
                    names.add(item.attr)
    return names


def test_no_attribute_shadows_rclpy(context) -> None:
    """The bug behind silent lifecycle/parameter services: `self._services = [...]`
    replaced rclpy's own list of what the executor serves."""
    plain = LifecycleNode("plain_lifecycle", context=context)
    try:
        taken = set(dir(plain)) | set(vars(plain))
        ours = assigned_attributes(Sam2Node)
        assert {"config", "_worker", "_camera_subs"} <= ours  # the scan sees our attributes
        clash = sorted(ours & taken)
        assert not clash, f"attributes shadowing rclpy's: {clash}"
    finally:
        plain.destroy_node()


class StandardClients:
    """Clients of the node's standard lifecycle and parameter services."""

    def __init__(self, node, target: str) -> None:
        self.get_state = node.create_client(GetState, f"{target}/get_state")
        self.change_state = node.create_client(ChangeState, f"{target}/change_state")
        self.list = node.create_client(ListParameters, f"{target}/list_parameters")
        self.get = node.create_client(GetParameters, f"{target}/get_parameters")
        self.set = node.create_client(SetParameters, f"{target}/set_parameters")
        self.describe = node.create_client(DescribeParameters,
                                           f"{target}/describe_parameters")


def call(client, request, timeout: float = 60.0):
    wait_for(client.service_is_ready, 30, f"the service {client.srv_name}")
    future = client.call_async(request)
    wait_for(future.done, timeout, f"a reply from {client.srv_name}")
    return future.result()


def state_of(clients: StandardClients) -> str:
    return call(clients.get_state, GetState.Request()).current_state.label


def transition(clients: StandardClients, transition_id: int) -> bool:
    return call(clients.change_state, ChangeState.Request(
        transition=Transition(id=transition_id))).success


def parameter(name: str, value) -> ParameterMsg:
    return Parameter(name, value=value).to_parameter_msg()


def test_lifecycle_cycles_through_services(context) -> None:
    node = small_node(context, "sam2", namespace="cycle", image_topic="/cycle/image")
    client = Client(context, node_name="cycle/sam2", image_topic="/cycle/image")
    clients = StandardClients(client.node, "/cycle/sam2")
    idle_handles = handles(node)
    cleaned_rss: list[int] = []  # after each cleanup
    with spinning(context, node, client.node):
        assert state_of(clients) == "unconfigured"
        for cycle in range(3):
            assert transition(clients, Transition.TRANSITION_CONFIGURE)
            assert state_of(clients) == "inactive"
            tracker = weakref.ref(node._session._tracker)
            assert transition(clients, Transition.TRANSITION_ACTIVATE)
            assert state_of(clients) == "active"
            # Working while active: a prompt gets a mask, frames come out.
            client.masks.clear()
            client.stream_until(lambda: client.masks, what=f"masks in cycle {cycle}")
            reply = client.call(client.add_prompt, mask_request(
                1, mask_to_image(block_mask(), header=Header())))
            assert reply.success, reply.message
            assert iou(image_to_mask(reply.mask), block_mask()) > 0.9
            # The standard services still answer while active (they went silent before).
            names = call(clients.list, ListParameters.Request()).result.names
            assert {f for f in NodeConfig.__annotations__} <= set(names)
            assert transition(clients, Transition.TRANSITION_DEACTIVATE)
            assert state_of(clients) == "inactive"
            configured_rss = rss()
            weights = sum(p.numel() * p.element_size()
                          for p in node._session._tracker.model.parameters())
            assert transition(clients, Transition.TRANSITION_CLEANUP)
            assert state_of(clients) == "unconfigured"
            # Nothing left behind: publishers, services, timers, worker thread, the model.
            assert handles(node) == idle_handles
            wait_for(lambda: tracker() is None or gc.collect() < 0, 10,
                     "the tracker to be freed after cleanup")
            cleaned_rss.append(rss())
            print(f"cycle {cycle}: configured {configured_rss >> 20} MiB, cleaned "
                  f"{cleaned_rss[-1] >> 20} MiB, weights {weights >> 20} MiB")
            # The model's memory goes back; the next cycles end where the first one did.
            assert cleaned_rss[-1] < configured_rss - weights // 2
            assert cleaned_rss[-1] < cleaned_rss[0] * 1.10, cleaned_rss
        assert transition(clients, Transition.TRANSITION_CONFIGURE)
        assert transition(clients, Transition.TRANSITION_ACTIVATE)
        assert transition(clients, Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert state_of(clients) == "finalized"
        assert handles(node) == idle_handles


def test_parameters_live_and_read_only(context) -> None:
    node = small_node(context, "sam2", namespace="params", image_topic="/params/image")
    client = Client(context, node_name="params/sam2", image_topic="/params/image")
    clients = StandardClients(client.node, "/params/sam2")
    with spinning(context, node, client.node):
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        client.stream_until(lambda: client.masks, what="the first mask array")

        reply = call(clients.get, GetParameters.Request(names=["image_size", "max_objects"]))
        assert [v.integer_value for v in reply.values] == [256, 16]
        described = call(clients.describe, DescribeParameters.Request(
            names=["max_objects", "image_size"])).descriptors
        assert "Applies at once" in described[0].description
        assert described[0].integer_range[0].to_value == 255
        assert "Fixed while configured" in described[1].description

        # Live: applied at once.
        results = call(clients.set, SetParameters.Request(parameters=[
            parameter("max_objects", 1), parameter("diagnostics_period", 0.5),
            parameter("publish_overlay", False)])).results
        assert all(r.successful for r in results), [r.reason for r in results]
        assert node.config.max_objects == 1 and not node.config.publish_overlay
        assert node._diagnostics_timer.timer_period_ns == 500_000_000
        reply = client.call(client.add_prompt, mask_request(
            1, mask_to_image(block_mask(), header=Header())))
        assert reply.success, reply.message
        reply = client.call(client.add_prompt, mask_request(
            2, mask_to_image(block_mask(), header=Header())))
        assert not reply.success and "max_objects" in reply.message
        overlays = len(client.overlays)
        client.stream_until(lambda: len(client.masks) > 3, what="more mask arrays")
        assert len(client.overlays) == overlays  # publish_overlay off

        # Read-only while configured: refused with the reason, value unchanged.
        result = call(clients.set, SetParameters.Request(
            parameters=[parameter("image_size", 512)])).results[0]
        assert not result.successful
        assert "image_size cannot change while the node is configured" in result.reason
        assert "configure again" in result.reason
        reply = call(clients.get, GetParameters.Request(names=["image_size"]))
        assert reply.values[0].integer_value == 256

        # Invalid values: refused with the valid range (rclpy checks the descriptor's range)
        # or choices (our callback).
        for name, value, expected in [("max_objects", 0, "Min: 1, Max: 255"),
                                      ("label_image_encoding", "rgb8",
                                       "expected one of ['mono16', 'mono8']"),
                                      ("diagnostics_period", 0.0, "Min: 0.1, Max: 60.0")]:
            result = call(clients.set, SetParameters.Request(
                parameters=[parameter(name, value)])).results[0]
            assert not result.successful and expected in result.reason, result.reason
        # A wrong type is refused by rclpy itself.
        wrong = ParameterMsg(name="max_objects", value=ParameterValue(
            type=ParameterType.PARAMETER_STRING, string_value="many"))
        assert not call(clients.set, SetParameters.Request(parameters=[wrong])).results[0] \
            .successful

        # Unconfigured: any valid value is accepted and read at the next configure.
        assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        result = call(clients.set, SetParameters.Request(
            parameters=[parameter("image_size", 320)])).results[0]
        assert result.successful, result.reason
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.config.image_size == 320


def test_live_parameters_are_the_cheap_ones() -> None:
    """Everything that shapes the model, its memory or the inputs is not live."""
    assert not LIVE & {"model_size", "checkpoint", "image_size", "device", "dtype", "backend",
                       "image_topic", "compressed_image_topic", "frame_buffer_length",
                       "max_conditioning_frames", "allow_random_weights"}
    assert LIVE <= set(NodeConfig.__annotations__)


def test_configure_failure_rolls_back(context, monkeypatch) -> None:
    """A failure late in configure (after publishers and services exist) leaves nothing."""
    node = small_node(context, "sam2_rollback")
    idle = handles(node)
    try:
        from sam2_ros.ros import worker

        def broken_start(self) -> None:
            raise RuntimeError("no thread for you")

        with monkeypatch.context() as patch:
            patch.setattr(worker.Worker, "start", broken_start)
            assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
        assert handles(node) == idle and node.config is None
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert handles(node) == idle
    finally:
        node.destroy_node()


def test_two_namespaces_do_not_interfere(context) -> None:
    nodes = [small_node(context, "sam2", namespace=ns) for ns in ("left", "right")]
    clients = {ns: Client(context, node_name=f"{ns}/sam2", image_topic=f"/{ns}/image")
               for ns in ("left", "right")}
    # Each node resolves its relative camera topic inside its namespace.
    for node in nodes:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    with spinning(context, *nodes, *(c.node for c in clients.values())):
        for client in clients.values():
            client.stream_until(lambda: client.masks, what="masks")
        left, right = clients["left"], clients["right"]
        reply = left.call(left.add_prompt, mask_request(
            3, mask_to_image(block_mask(), header=Header())))
        assert reply.success, reply.message
        # Only the left camera's frames carry the object.
        sent = left.sent[-1]
        left.stream_until(lambda: any(m.masks and m.header.stamp.sec > sent
                                      for m in left.masks), what="object 3 on the left")
        right.masks.clear()
        right.stream_until(lambda: len(right.masks) >= 3, what="right masks")
        assert all(m.masks == [] for m in right.masks)
        assert {m.header.stamp.sec for m in right.masks} <= set(right.sent)
        # The right node has no object 3 to remove; the left one has.
        reply = right.call(right.remove, RemoveObject.Request(object_id=3))
        assert not reply.success and "unknown object id 3" in reply.message
        reply = left.call(left.remove, RemoveObject.Request(object_id=3))
        assert reply.success, reply.message
        assert [n.get_namespace() for n in nodes] == ["/left", "/right"]


def test_sim_time_drives_latency_and_diagnostics(context) -> None:
    """With use_sim_time and a /clock publisher (a bag replay from t = 1000 s), diagnostics
    are stamped and timed with ROS time and a frame's age is the ROS clock minus its
    stamp, not wall time (which is ~1.7e9 s)."""
    node = small_node(context, "sam2", namespace="sim", image_topic="/sim/image",
                      use_sim_time=True)
    client = Client(context, node_name="sim/sam2", image_topic="/sim/image")
    clock = client.node.create_publisher(Clock, "/clock", 10)
    sim_ns = [1000 * 10**9]  # advances 50 ms every 50 ms
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.05):
            sim_ns[0] += 50_000_000
            clock.publish(Clock(clock=Time(sec=sim_ns[0] // 10**9,
                                           nanosec=sim_ns[0] % 10**9)))

    def publish_frame() -> None:  # stamped 250 ms before the bag's present
        stamp = sim_ns[0] - 250_000_000
        header = Header(frame_id="camera_optical",
                        stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9))
        client.camera.publish(array_to_image(FRAMES[0], encoding="rgb8", header=header))

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    try:
        with spinning(context, node, client.node):
            wait_for(lambda: node.get_clock().now().nanoseconds >= 1000 * 10**9, 30,
                     "the node's clock to follow /clock")
            assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS

            def tracked_statuses():
                publish_frame()
                return [(d.header.stamp.sec, s) for d in client.diagnostics for s in d.status
                        if s.name == "sam2: tracking" and any(
                            kv.key == "frames_tracked" and kv.value != "0" for kv in s.values)]
            statuses = wait_for(tracked_statuses, 60, "diagnostics after tracked frames")
            sec, status = statuses[-1]
            assert 1000 <= sec < 1000 + 120  # the bag's time, not the wall clock's
            values = {kv.key: kv.value for kv in status.values}
            # Stamped 250 ms before the present, published after tracking (< 60 s here).
            assert 250.0 <= float(values["frame_age_ms"]) < 60_000.0, values
            assert 0.0 <= float(values["latency_p99_ms"]) < 60_000.0, values
    finally:
        stop.set()
        ticker.join(timeout=5)
