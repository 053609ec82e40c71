"""The SAM 2 tracking node: ROS wiring only; the work lives in the modules it imports.

A lifecycle node: configure reads the parameters, loads the model and creates the
services and publishers; activate subscribes to the camera. With `autostart` (the
default) it configures and activates itself, so it also runs as a plain node:

    python -m sam2_ros.ros.node --ros-args --params-file config/sam2.yaml
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sam2_ros.msg import ObjectMaskArray
from sam2_ros.ros import conversions, services, visualization
from sam2_ros.ros.box_history import BoxHistory
from sam2_ros.ros.cameras import CameraHost
from sam2_ros.ros.detections_input import DetectionsInput
from sam2_ros.ros.depth_input import DepthInput
from sam2_ros.ros.diagnostics import SessionFigures, TrackingStats, diagnostic_status
from sam2_ros.ros.frame_buffer import BufferedFrame, FrameBuffer
from sam2_ros.ros.memory import release_free_memory
from sam2_ros.ros.model_loading import ModelLoadError, build_tracker
from sam2_ros.ros.parameters import (NodeConfig, ParameterError, check_update,
                                     declare_parameters, read_config)
from sam2_ros.ros.service_jobs import run_on_worker
from sam2_ros.ros.session import TrackingSession
from sam2_ros.ros.worker import Worker
from sam2_ros.srv import AddPrompt, RemoveObject

# A burst of more than 10 calls is silently lost with the default service queue depth.
SERVICE_QOS = QoSProfile(depth=100)
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class Sam2Node(LifecycleNode):
    """Tracks objects on a camera stream; prompted through ~/add_prompt.

    rclpy's Node keeps its own `_services`, `_subscriptions`, `_publishers`, `_timers`, ...
    (what the executor serves): our handles live under other names (test_ros_lifecycle
    checks that no attribute of ours shadows one of the base class's).
    """

    def __init__(self, node_name: str = "sam2", *, camera: str = "",
                 tracker_factory: Callable[[NodeConfig], object] | None = None,
                 shared_worker: Worker | None = None, **kwargs) -> None:
        """`camera`, `tracker_factory` and `shared_worker`: set by the node of several
        cameras (sam2_ros.ros.cameras) on each camera's node."""
        super().__init__(node_name, **kwargs)
        declare_parameters(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.config: NodeConfig | None = None
        self._camera_subs: list = []
        self._sam2_pubs: list = []
        self._sam2_srvs: list = []
        self._diagnostics_timer = None
        self._worker: Worker[BufferedFrame] | None = None
        self._detections: DetectionsInput | None = None
        self._depth_input: DepthInput | None = None  # 3D from depth: made at configure
        self._active = False
        self._shutting_down = False
        self._calls_in_flight = 0
        self._calls_lock = threading.Lock()
        self._accept_lock = threading.Lock()  # camera frames, one at a time (see _camera_group)
        self._rejected_frames = 0
        self._frame_age = 0.0  # s, ROS clock minus the stamp of the last published frame
        self._last_received: float | None = None  # s, ROS clock at the last camera frame
        self._camera_name = camera
        self._tracker_factory = tracker_factory
        self._shared_worker = shared_worker
        self._cameras: CameraHost | None = None  # the camera nodes, with `cameras` set

    # Lifecycle ------------------------------------------------------------------------
    def _transition(self, name: str, action: Callable[[], None]) -> TransitionCallbackReturn:
        """Run a transition; a failure is logged with its reason and returns FAILURE.
        rclpy turns an exception into ERROR without a word, so none escapes."""
        try:
            action()
        except (ParameterError, ModelLoadError) as error:
            self.get_logger().error(f"{name} failed: {error}")
            return FAILURE
        except Exception:
            self.get_logger().error(f"{name} failed:\n{traceback.format_exc()}")
            return FAILURE
        return SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("configure", self._configure)

    def _configure(self) -> None:
        """Build everything; on any failure (or Ctrl-C while the model loads) release what
        was made so far, so a later configure starts clean."""
        config = read_config(self)
        loading = "sharing the model of" if self._tracker_factory else "loading"
        self.get_logger().info(f"configuring: {loading} SAM 2 {config.model_size} "
                               f"({config.backend} on {config.device})")
        try:
            self._build(config)
        except BaseException:
            self._release()
            raise
        inputs = (f"cameras {list(config.cameras)}" if config.cameras
                  else f"camera {self.resolve_topic_name(config.image_topic)}")
        self.get_logger().info(f"configured: {config.model_size} at {config.image_size} px "
                               f"on {config.device} ({config.dtype}); {inputs}")

    def _build(self, config: NodeConfig) -> None:
        if config.cameras:
            self._build_cameras(config)
            return
        tracker = (self._tracker_factory(config) if self._tracker_factory is not None
                   else build_tracker(config, info=self.get_logger().info,
                                      warn=self.get_logger().warning))
        self._frames = FrameBuffer(capacity=config.frame_buffer_length,
                                   max_bytes=config.frame_buffer_bytes)
        self._boxes = BoxHistory(capacity=config.frame_buffer_length)  # for detections
        self._session = TrackingSession(tracker, frames=self._frames,
                                        max_objects=config.max_objects,
                                        on_tracked=self._on_tracked,
                                        observer=self._boxes.observe)
        self._stats = TrackingStats()
        self._rejected_frames = 0
        # Computed on the worker when the diagnostics timer asks (once per period).
        self._figures, self._figures_job = SessionFigures(), None
        # Reentrant, ordered by `_accept_lock`: in a mutually exclusive group, a frame that
        # arrives while the previous one converts is "ready but blocked", and rclpy's
        # multi-threaded executor spins on it holding the GIL (measured: 2 cameras on one
        # node fell to ~1 frame/s each, the workers waiting for the GIL).
        self._camera_group = ReentrantCallbackGroup()
        publisher = self.create_lifecycle_publisher
        self._masks_pub = publisher(ObjectMaskArray, "~/masks", 10)
        self._label_pub = publisher(Image, "~/label_image", 10)
        self._overlay_pub = publisher(Image, "~/overlay", 10)
        self._markers_pub = publisher(MarkerArray, "~/markers", 10)
        self._sam2_pubs = [self._masks_pub, self._label_pub, self._overlay_pub,
                           self._markers_pub]
        self._serve(config)
        self._depth_input = DepthInput.create(self, config)  # None without depth_topic
        if self._shared_worker is not None:  # one camera of several: a lane of theirs
            self._worker = self._shared_worker.lane(
                self.get_name(), handle_item=self._session.track,
                on_error=self._log_frame_error)
        else:
            self._worker = Worker(handle_item=self._session.track,
                                  on_error=self._log_frame_error)
        self._worker.start()
        self.config = config
        self._detections = DetectionsInput(
            self, config, session=self._session, boxes=self._boxes, frames=self._frames,
            submit=self._worker.submit, max_object_id=lambda: self._max_object_id)

    def _serve(self, config: NodeConfig) -> None:
        """Services, /diagnostics and its timer (also on a node of several cameras)."""
        self._service_group = ReentrantCallbackGroup()
        self._diagnostics_pub = self.create_lifecycle_publisher(DiagnosticArray,
                                                                "/diagnostics", 10)
        self._sam2_pubs.append(self._diagnostics_pub)
        for kind, name, callback in [(AddPrompt, "~/add_prompt", self._on_add_prompt),
                                     (RemoveObject, "~/remove_object", self._on_remove_object),
                                     (Trigger, "~/reset", self._on_reset)]:
            self._sam2_srvs.append(self.create_service(
                kind, name, callback, qos_profile=SERVICE_QOS,
                callback_group=self._service_group))
        self._diagnostics_timer = self.create_timer(config.diagnostics_period,
                                                    self._publish_diagnostics)

    def _build_cameras(self, config: NodeConfig) -> None:
        """Several cameras: one model, one worker, a node per camera (cameras.py)."""
        self._cameras = CameraHost(self, config)
        self._cameras.build(node_factory=Sam2Node)
        self.config = config
        self._serve(config)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("activate", self._subscribe)
        return super().on_activate(state) if result == SUCCESS else result

    def _subscribe(self) -> None:
        config = self.config
        if self._cameras is not None:
            self._cameras.activate()
            self._active = True
            return
        self._camera_subs.append(self.create_subscription(
            Image, config.image_topic, self._on_image, qos_profile_sensor_data,
            callback_group=self._camera_group))
        if config.compressed_image_topic:
            self._camera_subs.append(self.create_subscription(
                CompressedImage, config.compressed_image_topic, self._on_compressed_image,
                qos_profile_sensor_data, callback_group=self._camera_group))
        self._detections.activate()
        self._active = True

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._transition("deactivate", self._unsubscribe)
        return super().on_deactivate(state) if result == SUCCESS else result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("cleanup", self._release)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._transition("shutdown", self._release)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """After a transition raised: release everything, back to unconfigured."""
        return self._transition("error recovery", self._release)

    def _unsubscribe(self) -> None:
        self._active = False
        for subscription in self._camera_subs:
            self.destroy_subscription(subscription)
        self._camera_subs = []
        if self._detections is not None:
            self._detections.deactivate()
        if self._cameras is not None:
            self._cameras.deactivate()

    def _release(self) -> None:
        """Stop the worker and drop everything configure made (the model with it).
        Safe on a half-built configuration and when called twice."""
        self._unsubscribe()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._cameras is not None:
            self._cameras.destroy()
            self._cameras = None
        for service in self._sam2_srvs:
            self.destroy_service(service)
        self._sam2_srvs = []
        if self._diagnostics_timer is not None:
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = None
        if self._detections is not None:  # after the timer that reads its counters
            self._detections.destroy()
            self._detections = None
        if self._depth_input is not None:
            self._depth_input.destroy()
            self._depth_input = None
        for publisher in self._sam2_pubs:
            self.destroy_lifecycle_publisher(publisher)
        self._sam2_pubs = []
        for name in ("_session", "_frames", "_boxes", "_stats", "_figures", "_figures_job",
                     "_masks_pub", "_label_pub", "_overlay_pub", "_markers_pub",
                     "_diagnostics_pub"):
            self.__dict__.pop(name, None)
        self.config = None
        release_free_memory()

    def stop_serving(self, *, timeout: float = 2.0) -> None:
        """Shutting down: refuse new calls, fail the queued ones, and give the executor up to
        `timeout` s to send those answers before it goes."""
        self._shutting_down = True
        self._unsubscribe()
        if self._worker is not None:
            self._worker.stop()
        if self._cameras is not None:
            self._cameras.stop_serving(timeout=timeout)
        deadline = time.monotonic() + timeout
        while self._calls_in_flight and time.monotonic() < deadline:
            time.sleep(0.02)

    def destroy_node(self) -> None:
        self._release()
        super().destroy_node()

    # Parameters -----------------------------------------------------------------------
    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        """Validate a change; while configured apply a live one at once, refuse the others."""
        changes = {p.name: p.value for p in parameters if p.name in NodeConfig.__annotations__}
        try:
            if (self.config is not None and self._cameras is None
                    and changes.get("label_image_encoding") == "mono8"
                    and max(self._session.object_ids, default=0) > 255):
                raise ParameterError("label_image_encoding=mono8 holds ids up to 255 but "
                                     f"object ids {self._session.object_ids} are tracked")
            updated = check_update(self.config, changes)
        except ParameterError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if updated is not None:
            self._apply_live(updated)
        return SetParametersResult(successful=True)

    def _apply_live(self, config: NodeConfig) -> None:
        old, self.config = self.config, config
        if config.diagnostics_period != old.diagnostics_period:
            self._diagnostics_timer.timer_period_ns = int(config.diagnostics_period * 1e9)
        changed = {name: value for name, value in vars(config).items()
                   if value != getattr(old, name)}
        if self._cameras is not None:
            self._cameras.apply_live(changed)
        else:
            self._session.max_objects = config.max_objects
        if changed:
            self.get_logger().info(f"parameters applied: {changed}")

    @property
    def _max_object_id(self) -> int:
        return 255 if self.config.label_image_encoding == "mono8" else 65535

    def _now(self) -> float:
        """Seconds on the node's clock: ROS time (a bag's /clock) with use_sim_time."""
        return self.get_clock().now().nanoseconds * 1e-9

    # Camera ---------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._accept(msg.header, lambda: conversions.image_to_rgb(msg))

    def _on_compressed_image(self, msg: CompressedImage) -> None:
        self._accept(msg.header, lambda: conversions.compressed_to_rgb(msg))

    def _accept(self, header: Header, convert: Callable[[], np.ndarray]) -> None:
        """Convert, buffer, and hand the frame to the worker; never blocks on tracking."""
        with self._accept_lock:  # one frame of this camera at a time, in arrival order
            self._accept_locked(header, convert)

    def _accept_locked(self, header: Header, convert: Callable[[], np.ndarray]) -> None:
        worker, frames = self._worker, getattr(self, "_frames", None)
        if not self._active or worker is None or frames is None:
            return  # a frame still in flight while deactivating
        received = self._last_received = self._now()
        if not frames.accepts(header):
            return  # stamp not newer: the other input's copy, or out of order (counted)
        try:
            rgb = convert()
        except conversions.ImageConversionError as error:
            self._rejected_frames += 1
            self.get_logger().warning(f"camera frame rejected: {error}",
                                      throttle_duration_sec=5.0)
            return
        frame = frames.append(header, rgb, received)
        if frame is not None:
            worker.offer(frame)

    def _on_tracked(self, frame: BufferedFrame, results: dict) -> None:
        """Each newly tracked frame (by the worker, or by a prompt on the newest frame)."""
        self._publish(frame, results)
        finished = self._now()
        self._stats.record(finished=finished, latency=finished - frame.received)
        self._frame_age = finished - frame.stamp_ns * 1e-9

    def _log_frame_error(self, error: BaseException) -> None:
        if not self.context.ok():
            return  # shutting down (Ctrl-C) while a frame was in flight
        self._stats.record_failure(at=self._now(), error=repr(error))
        self.get_logger().error(f"tracking a frame failed: {error!r}", throttle_duration_sec=5.0)

    # Outputs --------------------------------------------------------------------------
    def _wanted(self, enabled: bool, publisher) -> bool:
        return enabled and publisher.get_subscription_count() > 0

    def _publish(self, frame: BufferedFrame, results: dict) -> None:
        config, header = self.config, frame.header
        masks = {object_id: result.mask for object_id, result in results.items()}
        # The paired depth frame (3D computed on first use), or None.
        spatial = self._depth_input.for_frame(frame, results) if self._depth_input else None
        if self._wanted(config.publish_masks, self._masks_pub):
            array = services.object_mask_array(header, results,
                                               labels=self._detections.labels())
            self._masks_pub.publish(spatial.fill_masks(array) if spatial else array)
        if self._wanted(config.publish_label_image, self._label_pub):
            dtype = np.uint8 if config.label_image_encoding == "mono8" else np.uint16
            labels = visualization.label_image(masks, height=frame.height, width=frame.width,
                                               dtype=dtype)
            self._label_pub.publish(conversions.array_to_image(
                labels, encoding=config.label_image_encoding, header=header))
        if self._wanted(config.publish_overlay, self._overlay_pub):
            self._overlay_pub.publish(conversions.array_to_image(
                visualization.overlay(frame.rgb, masks), encoding="rgb8", header=header))
        self._detections.publish(header, results)  # ~/detections, while subscribed
        if self._wanted(config.publish_markers, self._markers_pub):
            boxes = {object_id: box for object_id, mask in masks.items()
                     if (box := visualization.bounding_box(mask)) is not None}
            markers = visualization.box_markers(header, boxes, width=frame.width,
                                                height=frame.height)
            markers.markers += spatial.markers() if spatial else []  # 3D boxes
            self._markers_pub.publish(markers)

    def _publish_diagnostics(self) -> None:
        """Publish now with the figures last computed, and ask the worker for fresh ones
        (one request at a time: a busy worker must not delay diagnostics)."""
        if self._cameras is not None:  # each camera publishes its own status
            status = self._cameras.status(now=self._now(),
                                          silent_after=self.config.silent_after)
            self._diagnostics_pub.publish(DiagnosticArray(
                header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))
            return
        if self._figures_job is None or self._figures_job.done():
            self._figures_job = self._worker.submit(self._compute_figures)
        status = diagnostic_status(
            name=f"{self.get_name()}: tracking", hardware_id=self.config.device,
            stats=self._stats.snapshot(now=self._now()), dropped=self._worker.dropped,
            figures=self._figures,
            extra={"frame_age_ms": f"{self._frame_age * 1e3:.1f}",
                   "frames_rejected": str(self._rejected_frames),
                   "frames_stale": str(self._frames.stale),
                   "frames_buffered": str(len(self._frames)),
                   "frame_buffer_bytes": str(self._frames.nbytes),
                   **self._detections.diagnostics(),
                   **(self._depth_input.diagnostics() if self._depth_input else {})})
        self._diagnostics_pub.publish(DiagnosticArray(
            header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))

    def _compute_figures(self) -> None:
        """On the worker: what the session holds now (walks every object's tensors)."""
        self._figures = SessionFigures(objects=len(self._session.object_ids),
                                       memory_bytes=self._session.memory_bytes())

    # Services -------------------------------------------------------------------------
    # Async callbacks: a call waiting on the worker holds no executor thread (service_jobs).
    async def _run_job(self, job: Callable[[], object]) -> object:
        """Run a job on the worker (serialised with tracking) and await its result."""
        if self._shutting_down:
            raise RuntimeError("the node is shutting down")
        if not self._active:
            raise RuntimeError("the node is not active: activate it before calling services")
        with self._calls_lock:
            self._calls_in_flight += 1
        try:
            return await run_on_worker(self, self._worker, job,
                                       timeout=self.config.service_timeout,
                                       callback_group=self._service_group)
        finally:
            with self._calls_lock:
                self._calls_in_flight -= 1

    def _camera_node(self, camera: str) -> Sam2Node:
        """The node serving `camera` (the request's field): a camera of this node, or this
        node itself when it is that camera or the field is empty; KeyError otherwise."""
        if self._cameras is not None:
            return self._cameras.route(camera)
        if camera in ("", self._camera_name):
            return self
        raise KeyError(f"unknown camera {camera!r}: this node serves "
                       + (f"only camera {self._camera_name!r}" if self._camera_name
                          else "one unnamed camera (leave the camera field empty)"))

    async def _on_add_prompt(self, request: AddPrompt.Request,
                             response: AddPrompt.Response) -> AddPrompt.Response:
        try:
            node = self._camera_node(request.camera)
        except KeyError as error:
            return self._failed(response, "add_prompt", error)
        if node is not self:
            return await node._on_add_prompt(request, response)
        try:
            prompt = services.prompt_from_request(request, max_object_id=self._max_object_id)
            frame, result = await self._run_job(lambda: self._session.add_prompt(prompt))
        except Exception as error:  # every failure becomes a response, never a crash
            return self._failed(response, "add_prompt", error)
        services.fill_prompt_response(response, header=frame.header, result=result,
                                      object_id=prompt.object_id)
        if self._depth_input is not None:  # the object's 3D on that frame
            self._depth_input.fill_prompt_response(response, frame, result, prompt.object_id)
        return response

    async def _on_remove_object(self, request: RemoveObject.Request,
                                response: RemoveObject.Response) -> RemoveObject.Response:
        try:
            node = self._camera_node(request.camera)
        except KeyError as error:
            return self._failed(response, "remove_object", error)
        if node is not self:
            return await node._on_remove_object(request, response)
        try:
            services.check_object_id(request.object_id, max_object_id=self._max_object_id)
            await self._run_job(lambda: self._session.remove_object(request.object_id))
        except Exception as error:
            return self._failed(response, "remove_object", error)
        response.success, response.message = True, f"removed object {request.object_id}"
        return response

    async def _on_reset(self, request: Trigger.Request, response: Trigger.Response
                        ) -> Trigger.Response:
        if self._cameras is not None:  # every camera
            replies = [await node._on_reset(request, Trigger.Response())
                       for node in self._cameras.nodes.values()]
            response.success = all(reply.success for reply in replies)
            response.message = "; ".join(f"{camera}: {reply.message}" for camera, reply
                                         in zip(self._cameras.nodes, replies))
            return response
        try:
            await self._run_job(self._session.reset)
        except Exception as error:
            return self._failed(response, "reset", error)
        response.success, response.message = True, "all objects and memory cleared"
        return response

    def _failed(self, response, service: str, error: BaseException):
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        response.success, response.message = False, f"{type(error).__name__}: {message}"
        self.get_logger().warning(f"{service} failed: {response.message}")
        return response


GIL_SWITCH_INTERVAL = 2e-4  # s, see main()


def main(args: list[str] | None = None) -> int:
    """Run the node until SIGINT or SIGTERM (exit 0, also while the model still loads);
    exit 1 when autostart cannot configure or activate it.

    rclpy's own signal handler would shut the context down at once, dropping the service
    calls still queued, and an exception raised by a handler inside torch or rclpy's C++
    code aborts the interpreter. Ours only records the request; the main thread acts on it
    once it is free (after a model load): new calls refused, queued ones answered
    "shutting down", then the executor (spinning in its own thread) and the context go.
    """
    # The worker releases the GIL in every torch op and takes it back after; while an
    # executor thread runs Python, each take-back can wait out a whole switch interval
    # (5 ms by default). Measured, nano @ 128 px, 2 cameras on one node: ~1 frame/s at
    # 5 ms, 44 at 0.2 ms.
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    requests: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _: requests.append(number))
    node: Sam2Node | None = None
    # Service callbacks wait for the worker; extra threads keep the camera flowing.
    executor = MultiThreadedExecutor(num_threads=4)
    spinner = threading.Thread(target=_spin, args=(executor,), name="sam2_executor", daemon=True)
    try:
        node = Sam2Node()
        executor.add_node(node)
        spinner.start()
        if node.get_parameter("autostart").value and not requests and (
                node.trigger_configure() != SUCCESS
                or (not requests and node.trigger_activate() != SUCCESS)):
            if not requests:
                node.get_logger().error("autostart failed: see the errors above")
                return 1
        while not requests and spinner.is_alive():
            time.sleep(0.1)
        if requests:
            node.get_logger().info(f"{signal.Signals(requests[0]).name}: shutting down")
    finally:
        # A second request while stopping ends the process at once.
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: os._exit(0))
        try:
            if node is not None:
                node.stop_serving()
        finally:
            executor.shutdown(timeout_sec=5)
            if node is not None:
                node.destroy_node()
            rclpy.try_shutdown()
            if spinner.is_alive():  # a thread left in rcl at exit aborts the interpreter
                spinner.join(timeout=5)
    return 0


def _spin(executor: MultiThreadedExecutor) -> None:
    try:
        executor.spin()
    except ExternalShutdownException:
        pass


if __name__ == "__main__":
    sys.exit(main())
