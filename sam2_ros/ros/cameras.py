"""Several cameras, one model: the cameras a node with a `cameras` parameter serves.

Each camera is a Sam2Node of its own, named after the camera in the parent's namespace
(camera `front` of `/sam2` is `/sam2/front`, so its outputs are `/sam2/front/masks`, ...):
its own subscriptions, frame buffer, tracker state, object ids, services and diagnostics.
What they share is made once here: the model and its backend (every camera's tracker is a
StreamingTracker over them) and one worker thread with a slot per camera, served in turn.
The parent forwards its lifecycle transitions and live parameters to the cameras and
routes its own services by the request's `camera` field.
"""
from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import torch
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.parameter import Parameter

from sam2_ros.backends.batching import BatchingBackend
from sam2_ros.ros.model_loading import build_tracker
from sam2_ros.ros.parameters import NodeConfig, ParameterError
from sam2_ros.ros.worker import Worker

# A camera's own inputs: parameters `<camera>.<name>` of the parent.
CAMERA_TOPICS = ("image_topic", "compressed_image_topic", "depth_topic", "camera_info_topic",
                 "detections_topic")
SUCCESS = TransitionCallbackReturn.SUCCESS


def camera_topic_defaults(camera: str) -> dict[str, str]:
    """The inputs of camera `camera` unless its parameters say otherwise."""
    return {name: f"{camera}/image" if name == "image_topic" else ""
            for name in CAMERA_TOPICS}


def camera_overrides(config: NodeConfig, topics: dict[str, str]) -> dict[str, object]:
    """A camera node's parameters: the parent's (those not at their default) with the
    camera's own topics, never cameras of its own and never autostart."""
    defaults = NodeConfig()
    values = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)
              if getattr(config, field.name) != getattr(defaults, field.name)}
    values.update(topics, cameras=(), autostart=False)
    return {name: list(value) if isinstance(value, tuple) else value
            for name, value in values.items() if value != ()}


class CameraHost:
    """Builds the shared model and worker and one camera node per name; forwards the
    parent's transitions to them."""

    def __init__(self, parent: LifecycleNode, config: NodeConfig) -> None:
        self._parent = parent
        self._config = config
        self.nodes: dict[str, LifecycleNode] = {}
        self.worker: Worker | None = None
        self.batching: BatchingBackend | None = None  # with encoder_batch_wait
        self.model_bytes = 0

    def build(self, node_factory: Callable[..., LifecycleNode]) -> None:
        """Load the model, start the worker, make and configure a node per camera with
        `node_factory(name, **kwargs)`; on failure `destroy` releases what was made."""
        parent, config = self._parent, self._config
        executor = parent.executor
        if executor is None:
            raise RuntimeError("a node with cameras must be added to an executor before "
                               "configure (its camera nodes join the same one)")
        logger = parent.get_logger()
        base = build_tracker(config, info=logger.info, warn=logger.warning)
        self.model_bytes = sum(p.numel() * p.element_size() for p in base.model.parameters())
        threads = config.worker_threads or len(config.cameras)
        # Each worker thread's torch ops on its share of the cores: several threads with
        # a full OpenMP team each oversubscribe them (measured, 2 cameras on 2 cores:
        # 69 frames/s with one intra-op thread per worker, 44 with two).
        intra_op = max(1, (os.cpu_count() or 1) // threads)
        self.worker = Worker(name="sam2_cameras", threads=threads,
                             on_thread_start=lambda: torch.set_num_threads(intra_op))
        logger.info(f"{threads} worker thread(s) for {len(config.cameras)} cameras, "
                    f"{intra_op} torch intra-op thread(s) each")
        self.worker.start()

        backend = base.backend
        batch = min(threads, len(config.cameras))  # frames that can reach the encoder at once
        if config.encoder_batch_wait > 0 and config.backend == "torch" and batch > 1:
            backend = self.batching = BatchingBackend(backend, max_batch=batch,
                                                      wait=config.encoder_batch_wait)

        def tracker_factory(camera_config: NodeConfig):
            # The same model and backend: weights, runtime and engines exist once.
            return type(base)(base.model, backend=backend, device=base.device,
                              dtype=base.dtype,
                              max_conditioning_frames=camera_config.max_conditioning_frames,
                              feature_cache_bytes=camera_config.feature_cache_bytes)

        use_sim_time = parent.get_parameter("use_sim_time").value
        for camera in config.cameras:
            topics = {name: self._camera_topic(camera, name) for name in CAMERA_TOPICS}
            overrides = [Parameter(name, value=value) for name, value
                         in camera_overrides(config, topics).items()]
            node = node_factory(
                camera, namespace=parent.get_fully_qualified_name(), context=parent.context,
                use_global_arguments=False,  # the parent's remaps and params are not its
                parameter_overrides=[*overrides, Parameter("use_sim_time", value=use_sim_time)],
                camera=camera, tracker_factory=tracker_factory, shared_worker=self.worker)
            self.nodes[camera] = node
            executor.add_node(node)
            if node.trigger_configure() != SUCCESS:
                raise ParameterError(f"camera {camera!r} failed to configure: see its log")

    def _camera_topic(self, camera: str, name: str) -> str:
        """Parameter `<camera>.<name>` (declared on first use), resolved in the parent's
        namespace: `front/image` on /robot/sam2 is /robot/front/image."""
        key = f"{camera}.{name}"
        if not self._parent.has_parameter(key):
            self._parent.declare_parameter(key, camera_topic_defaults(camera)[name])
        value = self._parent.get_parameter(key).value
        return self._parent.resolve_topic_name(value) if value else ""

    def route(self, camera: str) -> LifecycleNode:
        """The node of `camera`; KeyError naming the known cameras."""
        node = self.nodes.get(camera)
        if node is None:
            raise KeyError(f"unknown camera {camera!r}: this node's cameras are "
                           f"{list(self.nodes)} (set the request's camera field)")
        return node

    def activate(self) -> None:
        for camera, node in self.nodes.items():
            if node.trigger_activate() != SUCCESS:
                raise ParameterError(f"camera {camera!r} failed to activate: see its log")

    def deactivate(self) -> None:
        for node in self.nodes.values():
            if node._active:
                node.trigger_deactivate()

    def apply_live(self, changed: dict[str, object]) -> None:
        """Forward live parameter changes to every camera."""
        parameters = [Parameter(name, value=list(value) if isinstance(value, tuple) else value)
                      for name, value in changed.items()]
        for node in self.nodes.values():
            node.set_parameters(parameters)

    def stop_serving(self, *, timeout: float) -> None:
        """Every camera refuses new calls and fails its queued ones; wait up to `timeout` s
        for the answers to go."""
        for node in self.nodes.values():
            node.stop_serving(timeout=0.0)
        deadline = time.monotonic() + timeout
        while (any(node._calls_in_flight for node in self.nodes.values())
               and time.monotonic() < deadline):
            time.sleep(0.02)

    def destroy(self) -> None:
        """Destroy the camera nodes (each releases its state), then the shared worker."""
        executor = self._parent.executor
        for node in self.nodes.values():
            if executor is not None:
                executor.remove_node(node)
            node.destroy_node()
        self.nodes = {}
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def status(self, *, now: float, silent_after: float) -> DiagnosticStatus:
        """The shared model's status: frames tracked per second over all cameras, frames
        dropped, and WARN naming the active cameras with no frame for `silent_after` s (the
        others go on). Each camera's node publishes its own status too."""
        silent, values, fps = [], {}, 0.0
        for camera, node in self.nodes.items():
            if node.config is not None:
                fps += node._stats.snapshot(now=now).fps
            last = node._last_received
            age = float("inf") if last is None else now - last
            values[f"{camera}_last_frame_s"] = "never" if last is None else f"{age:.2f}"
            if node._active and age > silent_after:
                silent.append(camera)
        if silent:
            level = DiagnosticStatus.WARN
            message = f"silent cameras (no frame for {silent_after:g} s): {', '.join(silent)}"
        else:
            level, message = DiagnosticStatus.OK, f"serving {len(self.nodes)} cameras"
        values = {"cameras": ",".join(self.nodes), "silent_cameras": ",".join(silent),
                  "model_size": self._config.model_size, "backend": self._config.backend,
                  "model_bytes": str(self.model_bytes), "fps_total": f"{fps:.2f}",
                  "frames_dropped": str(self.worker.dropped), **values}
        if self.batching is not None:
            values["encoder_frames_per_call"] = (
                f"{self.batching.frames / max(self.batching.batches, 1):.2f}")
        return DiagnosticStatus(level=level, name=f"{self._parent.get_name()}: model",
                                message=message, hardware_id=self._config.device,
                                values=[KeyValue(key=k, value=v) for k, v in values.items()])
