"""The SAM 2 tracking node: ROS wiring only; the work lives in the modules it imports.

A lifecycle node: configure reads the parameters, loads the model and creates the
services and publishers; activate subscribes to the camera. With `autostart` (the
default) it configures and activates itself, so it also runs as a plain node:

    python -m sam2_ros.ros.node --ros-args --params-file config/sam2.yaml
"""
from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from sam2_ros.msg import ObjectMaskArray
from sam2_ros.ros import conversions, services, visualization
from sam2_ros.ros.box_history import BoxHistory  # detector-driven tracking
from sam2_ros.ros.detections_input import DetectionsInput  # detector-driven tracking
from sam2_ros.ros.diagnostics import TrackingStats, diagnostic_status
from sam2_ros.ros.frame_buffer import BufferedFrame, FrameBuffer
from sam2_ros.ros.model_loading import ModelLoadError, build_tracker
from sam2_ros.ros.parameters import NodeConfig, ParameterError, declare_parameters, read_config
from sam2_ros.ros.session import TrackingSession
from sam2_ros.ros.worker import Worker
from sam2_ros.srv import AddPrompt, RemoveObject

# A burst of more than 10 calls is silently lost with the default service queue depth.
SERVICE_QOS = QoSProfile(depth=100)
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


class Sam2Node(LifecycleNode):
    """Tracks objects on a camera stream; prompted through ~/add_prompt."""

    def __init__(self, node_name: str = "sam2", **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        declare_parameters(self)
        self.config: NodeConfig | None = None
        self._subscriptions: list = []
        self._active = False
        self._rejected_frames = 0
        # Written by the worker after each frame, read by the diagnostics timer.
        self._objects = 0
        self._memory_bytes = 0

    # Lifecycle ------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        # rclpy swallows exceptions from transition callbacks: report them here.
        try:
            self._configure()
        except (ParameterError, ModelLoadError) as error:
            self.get_logger().error(str(error))
            return FAILURE
        except Exception:
            self.get_logger().error(f"configure failed:\n{traceback.format_exc()}")
            return FAILURE
        return SUCCESS

    def _configure(self) -> None:
        config = read_config(self)
        tracker = build_tracker(config, info=self.get_logger().info,
                                warn=self.get_logger().warning)
        self.config = config
        self._frames = FrameBuffer(capacity=config.frame_buffer_length)
        self._boxes = BoxHistory(capacity=config.frame_buffer_length)  # detections
        self._session = TrackingSession(tracker, frames=self._frames,
                                        capacity=config.frame_buffer_length,
                                        max_objects=config.max_objects,
                                        observer=self._boxes.observe)  # detections
        self._max_object_id = 255 if config.label_image_encoding == "mono8" else 65535
        self._stats = TrackingStats()
        self._worker: Worker[BufferedFrame] = Worker(handle_item=self._track_frame,
                                                     on_error=self._log_frame_error)
        self._detections = DetectionsInput(  # detector-driven tracking
            self, config, session=self._session, boxes=self._boxes, frames=self._frames,
            submit=self._worker.submit, max_object_id=self._max_object_id)
        self._service_group = ReentrantCallbackGroup()
        self._camera_group = MutuallyExclusiveCallbackGroup()
        publisher = self.create_lifecycle_publisher
        self._masks_pub = publisher(ObjectMaskArray, "~/masks", 10)
        self._label_pub = publisher(Image, "~/label_image", 10)
        self._overlay_pub = publisher(Image, "~/overlay", 10)
        self._markers_pub = publisher(MarkerArray, "~/markers", 10)
        self._diagnostics_pub = publisher(DiagnosticArray, "/diagnostics", 10)
        self._services = [
            self.create_service(AddPrompt, "~/add_prompt", self._on_add_prompt,
                                qos_profile=SERVICE_QOS, callback_group=self._service_group),
            self.create_service(RemoveObject, "~/remove_object", self._on_remove_object,
                                qos_profile=SERVICE_QOS, callback_group=self._service_group),
            self.create_service(Trigger, "~/reset", self._on_reset,
                                qos_profile=SERVICE_QOS, callback_group=self._service_group),
        ]
        self._diagnostics_timer = self.create_timer(config.diagnostics_period,
                                                    self._publish_diagnostics)
        self._worker.start()
        self.get_logger().info(
            f"configured: {config.model_size} at {config.image_size} px on {config.device} "
            f"({config.dtype}); camera {self.resolve_topic_name(config.image_topic)}")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        config = self.config
        self._subscriptions = [self.create_subscription(
            Image, config.image_topic, self._on_image, qos_profile_sensor_data,
            callback_group=self._camera_group)]
        if config.compressed_image_topic:
            self._subscriptions.append(self.create_subscription(
                CompressedImage, config.compressed_image_topic, self._on_compressed_image,
                qos_profile_sensor_data, callback_group=self._camera_group))
        self._detections.activate()  # detector-driven tracking
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._unsubscribe()
        self._release()
        return SUCCESS

    def _unsubscribe(self) -> None:
        self._active = False
        for subscription in self._subscriptions:
            self.destroy_subscription(subscription)
        self._subscriptions = []
        if self.config is not None:
            self._detections.deactivate()  # detector-driven tracking

    def _release(self) -> None:
        """Stop the worker and drop what configure made (the model with it)."""
        if self.config is None:
            return
        self._worker.stop()
        self._detections.destroy()  # detector-driven tracking
        for service in self._services:
            self.destroy_service(service)
        self.destroy_timer(self._diagnostics_timer)
        for publisher in (self._masks_pub, self._label_pub, self._overlay_pub,
                          self._markers_pub, self._diagnostics_pub):
            self.destroy_lifecycle_publisher(publisher)
        del self._session, self._frames, self._boxes, self._detections
        self.config = None

    def destroy_node(self) -> None:
        if self.config is not None:
            self._worker.stop()
        super().destroy_node()

    # Camera ---------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._accept(msg.header, lambda: conversions.image_to_rgb(msg))

    def _on_compressed_image(self, msg: CompressedImage) -> None:
        self._accept(msg.header, lambda: conversions.compressed_to_rgb(msg))

    def _accept(self, header: Header, convert: Callable[[], np.ndarray]) -> None:
        """Convert, buffer, and hand the frame to the worker; never blocks on tracking."""
        received = time.monotonic()
        try:
            rgb = convert()
        except conversions.ImageConversionError as error:
            self._rejected_frames += 1
            self.get_logger().warning(f"camera frame rejected: {error}",
                                      throttle_duration_sec=5.0)
            return
        self._worker.offer(self._frames.append(header, rgb, received))

    def _track_frame(self, frame: BufferedFrame) -> None:
        results = self._session.track(frame)
        if results is None:
            return  # a stamped prompt tracked it already
        self._publish(frame, results)
        finished = time.monotonic()
        self._stats.record(finished=finished, latency=finished - frame.received)
        self._objects = len(results)
        self._memory_bytes = self._session.memory_bytes()

    def _log_frame_error(self, error: BaseException) -> None:
        if not self.context.ok():
            return  # shutting down (Ctrl-C) while a frame was in flight
        self.get_logger().error(f"tracking a frame failed: {error!r}", throttle_duration_sec=5.0)

    # Outputs --------------------------------------------------------------------------
    def _wanted(self, enabled: bool, publisher) -> bool:
        return enabled and publisher.get_subscription_count() > 0

    def _publish(self, frame: BufferedFrame, results: dict) -> None:
        config, header = self.config, frame.header
        masks = {object_id: result.mask for object_id, result in results.items()}
        if self._wanted(config.publish_masks, self._masks_pub):
            self._masks_pub.publish(services.object_mask_array(
                header, results, labels=self._detections.labels()))
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
            self._markers_pub.publish(visualization.box_markers(
                header, boxes, width=frame.width, height=frame.height))

    def _publish_diagnostics(self) -> None:
        status = diagnostic_status(
            name=f"{self.get_name()}: tracking", hardware_id=self.config.device,
            stats=self._stats.snapshot(now=time.monotonic()), dropped=self._worker.dropped,
            objects=self._objects, memory_bytes=self._memory_bytes,
            extra={"frames_rejected": str(self._rejected_frames),
                   "frames_buffered": str(len(self._frames)),
                   **self._detections.diagnostics()})
        self._diagnostics_pub.publish(DiagnosticArray(
            header=Header(stamp=self.get_clock().now().to_msg()), status=[status]))

    # Services -------------------------------------------------------------------------
    def _run_job(self, job: Callable[[], object]) -> object:
        """Run a job on the worker (serialised with tracking) and wait for its result."""
        if not self._active:
            raise RuntimeError("the node is not active: activate it before calling services")
        future = self._worker.submit(job)
        try:
            return future.result(timeout=self.config.service_timeout)
        except TimeoutError:
            if future.cancel():
                raise TimeoutError(f"the worker did not start the request within "
                                   f"{self.config.service_timeout} s (service_timeout); "
                                   f"it was cancelled") from None
            raise TimeoutError(f"the request is still running after "
                               f"{self.config.service_timeout} s (service_timeout); it "
                               f"will still be applied") from None

    def _on_add_prompt(self, request: AddPrompt.Request,
                       response: AddPrompt.Response) -> AddPrompt.Response:
        try:
            prompt = services.prompt_from_request(request, max_object_id=self._max_object_id)
            frame, result = self._run_job(lambda: self._session.add_prompt(prompt))
        except Exception as error:  # every failure becomes a response, never a crash
            return self._failed(response, "add_prompt", error)
        return services.fill_prompt_response(response, header=frame.header, result=result,
                                             object_id=prompt.object_id)

    def _on_remove_object(self, request: RemoveObject.Request,
                          response: RemoveObject.Response) -> RemoveObject.Response:
        try:
            services.check_object_id(request.object_id, max_object_id=self._max_object_id)
            self._run_job(lambda: self._session.remove_object(request.object_id))
        except Exception as error:
            return self._failed(response, "remove_object", error)
        response.success, response.message = True, f"removed object {request.object_id}"
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response
                  ) -> Trigger.Response:
        try:
            self._run_job(self._session.reset)
        except Exception as error:
            return self._failed(response, "reset", error)
        response.success, response.message = True, "all objects and memory cleared"
        return response

    def _failed(self, response, service: str, error: BaseException):
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        response.success, response.message = False, f"{type(error).__name__}: {message}"
        self.get_logger().warning(f"{service} failed: {response.message}")
        return response


def main(args: list[str] | None = None) -> int:
    """Run the node until Ctrl-C; exit status 1 when autostart cannot configure it."""
    rclpy.init(args=args)
    node = Sam2Node()
    # Service callbacks wait for the worker; extra threads keep the camera flowing.
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        if node.get_parameter("autostart").value:
            if node.trigger_configure() != SUCCESS or node.trigger_activate() != SUCCESS:
                node.get_logger().fatal("autostart failed: see the errors above")
                return 1
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
