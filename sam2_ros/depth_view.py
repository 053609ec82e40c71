"""The 3D outputs in one picture: the node on a generated RGB-D clip, rendered with matplotlib.

    python -m sam2_ros.depth_view --out docs/depth_view.png

Runs the node (in this process, over DDS) with the project's nano checkpoint on the clip of
sam2_ros.train.rgbd_clip (a disc coming towards the camera, a square at 1.4 m, a wall at
2.5 m; 640x480 colour, 16UC1 depth and CameraInfo), prompts both objects with boxes on the
first frame, and draws the last frame's ~/overlay beside its ~/points cloud and the 3D boxes
of ~/markers: what rviz shows with config/sam2.rviz, drawn without rviz (not a screenshot).
"""
from __future__ import annotations

import argparse
import io
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from sam2_ros.ros.conversions import array_to_image
from sam2_ros.spatial.camera import depth_from_metres

REPO = Path(__file__).resolve().parents[1]
COLOUR_FRAME, DEPTH_FRAME = "camera_color_optical_frame", "camera_depth_optical_frame"


def stamped(frame_id: str, stamp_ns: int) -> Header:
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return header


def depth_message(depth: np.ndarray, header: Header, encoding: str = "16UC1") -> Image:
    """(H, W) metres as a depth driver publishes them (16UC1 millimetres or 32FC1 metres)."""
    return array_to_image(depth_from_metres(depth, encoding), encoding=encoding, header=header)


def camera_info_message(header: Header, k, *, width: int, height: int) -> CameraInfo:
    return CameraInfo(header=header, width=width, height=height, k=list(k))


def render(overlay: np.ndarray, cloud: np.ndarray, boxes: dict[int, np.ndarray],
           labels: dict[int, tuple[np.ndarray, str]], path: Path, title: str) -> Path:
    """The overlay beside a 3D view of the cloud (structured x, y, z, object_id) and the boxes
    (per object id: (2E, 3) edge end points), with the camera at the origin; optical frame
    drawn with y down as up-is-up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sam2_ros.ros.visualization import object_colour

    figure = plt.figure(figsize=(11, 4.6), dpi=90)
    left = figure.add_subplot(1, 2, 1)
    left.imshow(overlay)
    left.set_title("~/overlay")
    left.axis("off")
    view = figure.add_subplot(1, 2, 2, projection="3d")
    for object_id in sorted(set(cloud["object_id"].tolist())):
        points = cloud[cloud["object_id"] == object_id]
        colour = np.array(object_colour(object_id)) / 255
        view.scatter(points["x"], points["z"], -points["y"], s=1, color=colour)
    for object_id, ends in boxes.items():
        colour = np.array(object_colour(object_id)) / 255
        for start, end in zip(ends[0::2], ends[1::2]):
            view.plot(*zip((start[0], start[2], -start[1]), (end[0], end[2], -end[1])),
                      color=colour, linewidth=1.5)
    for object_id, (position, text) in labels.items():
        view.text(position[0], position[2], -position[1], text, color="black")
    view.scatter([0], [0], [0], marker="^", s=60, color="black")
    view.text(0, 0, 0.03, "camera")
    view.set_xlabel("x (m)")
    view.set_ylabel("z, forward (m)")
    view.set_zlabel("-y, up (m)")
    view.set_ylim(0, 1.6)
    view.view_init(elev=18, azim=-62)
    view.set_title("~/points and the 3D boxes of ~/markers (camera optical frame)")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    # A 128-colour palette keeps the committed picture small.
    PILImage.open(buffer).convert("RGB").quantize(128).save(path, optimize=True)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "depth_view.png")
    parser.add_argument("--frames", type=int, default=12)
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import PointCloud2
    from visualization_msgs.msg import MarkerArray

    from sam2_ros.demo import NANO_CHECKPOINT
    from sam2_ros.engine.checkpoint import trained_image_size
    from sam2_ros.msg import ObjectMaskArray
    from sam2_ros.ros.conversions import image_to_rgb
    from sam2_ros.ros.depth_msgs import CLOUD_DTYPE, MARKER_NAMESPACE
    from sam2_ros.ros.node import Sam2Node
    from sam2_ros.srv import AddPrompt
    from sam2_ros.train.prompts import mask_to_box
    from sam2_ros.train.rgbd_clip import HEIGHT, K, WIDTH, approaching_disc_clip

    SUCCESS = TransitionCallbackReturn.SUCCESS
    clip, _ = approaching_disc_clip(num_frames=args.frames)
    rclpy.init()
    node = Sam2Node("sam2", parameter_overrides=[
        Parameter("model_size", value="nano"), Parameter("checkpoint", value=str(NANO_CHECKPOINT)),
        Parameter("image_size", value=trained_image_size(NANO_CHECKPOINT)),
        Parameter("image_topic", value="/camera/color/image_raw"),
        Parameter("depth_topic", value="/camera/aligned_depth_to_color/image_raw"),
        Parameter("points_stride", value=2)])
    viewer = rclpy.create_node("sam2_depth_view")
    colour_pub = viewer.create_publisher(Image, "/camera/color/image_raw", qos_profile_sensor_data)
    depth_pub = viewer.create_publisher(Image, "/camera/aligned_depth_to_color/image_raw",
                                        qos_profile_sensor_data)
    info_pub = viewer.create_publisher(CameraInfo, "/camera/aligned_depth_to_color/camera_info",
                                       qos_profile_sensor_data)
    received: dict[str, list] = {"masks": [], "overlay": [], "points": [], "markers": []}
    for kind, topic in ((ObjectMaskArray, "masks"), (Image, "overlay"), (PointCloud2, "points"),
                        (MarkerArray, "markers")):
        viewer.create_subscription(kind, f"/sam2/{topic}", received[topic].append, 10)
    prompt = viewer.create_client(AddPrompt, "/sam2/add_prompt")
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    executor.add_node(viewer)
    threading.Thread(target=executor.spin, daemon=True).start()

    def wait(condition, what: str, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if value := condition():
                return value
            time.sleep(0.02)
        raise TimeoutError(f"no {what} within {timeout} s")

    def of_stamp(topic: str, stamp_ns: int):
        def header(msg) -> Header:  # a MarkerArray's markers carry the frame's header
            return msg.markers[0].header if isinstance(msg, MarkerArray) else msg.header
        return [m for m in received[topic]
                if header(m).stamp.sec * 10**9 + header(m).stamp.nanosec == stamp_ns]

    try:
        if node.trigger_configure() != SUCCESS or node.trigger_activate() != SUCCESS:
            raise RuntimeError("the node did not start: see its log above")
        wait(lambda: prompt.service_is_ready() and depth_pub.get_subscription_count()
             and colour_pub.get_subscription_count() and info_pub.get_subscription_count(),
             "node")
        for t in range(args.frames):
            stamp = (t + 1) * 10**9
            depth_pub.publish(depth_message(clip.depth[t], stamped(DEPTH_FRAME, stamp)))
            info_pub.publish(camera_info_message(stamped(DEPTH_FRAME, stamp), K, width=WIDTH,
                                                 height=HEIGHT))
            time.sleep(0.1)
            colour_pub.publish(array_to_image(clip.frames[t], encoding="rgb8",
                                              header=stamped(COLOUR_FRAME, stamp)))
            wait(lambda: of_stamp("masks", stamp), f"masks of frame {t}")
            if t == 0:
                for object_id in (1, 2):
                    box = mask_to_box(clip.masks[0, object_id - 1]).tolist()
                    future = prompt.call_async(AddPrompt.Request(object_id=object_id, box=box))
                    reply = wait(lambda: future.done() and future.result(), "add_prompt reply")
                    print(f"{reply.message}; 3D valid: {reply.position_3d.valid}")
        overlay = image_to_rgb(wait(lambda: of_stamp("overlay", stamp), "overlay")[-1])
        cloud = np.frombuffer(bytes(wait(lambda: of_stamp("points", stamp), "points")[-1].data),
                              dtype=CLOUD_DTYPE)
        markers = [m for m in wait(lambda: of_stamp("markers", stamp), "markers")[-1].markers
                   if m.ns == MARKER_NAMESPACE]
        masks = of_stamp("masks", stamp)[-1].masks
    finally:
        executor.shutdown(timeout_sec=5)
        node.destroy_node()
        viewer.destroy_node()
        rclpy.try_shutdown()

    def xyz(point) -> np.ndarray:
        return np.array([point.x, point.y, point.z])

    boxes = {m.id // 2: np.array([xyz(p) for p in m.points]) for m in markers if m.id % 2 == 0}
    labels = {m.id // 2: (xyz(m.pose.position), m.text) for m in markers if m.id % 2 == 1}
    summary = ";  ".join(
        f"object {m.object_id}: centroid ({m.position_3d.centroid.x:.2f}, "
        f"{m.position_3d.centroid.y:.2f}, {m.position_3d.centroid.z:.2f}) m, "
        f"{m.position_3d.num_points} points" for m in masks)
    title = (f"The node (nano checkpoint) on the generated RGB-D clip, frame {args.frames - 1}: "
             f"a matplotlib rendering of its topics, not an rviz screenshot\n{summary}")
    print(summary)
    print(f"wrote {render(overlay, cloud, boxes, labels, args.out, title)} ({len(cloud)} points)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
