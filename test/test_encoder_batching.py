"""BatchingBackend: frames of several cameras arriving together share one encoder call and
each caller gets exactly its own frame's features."""
from __future__ import annotations

import threading

import torch

from sam2_ros.backends import make_backend
from sam2_ros.backends.batching import BatchingBackend
from sam2_ros.engine import StreamingTracker, build_model


def small_backend():
    torch.manual_seed(0)
    model = build_model("tiny", image_size=128).eval()
    return make_backend("torch", model)


def test_concurrent_frames_share_one_call_and_get_their_own_features() -> None:
    backend = small_backend()
    batching = BatchingBackend(backend, max_batch=2, wait=5.0)
    images = [torch.rand(1, 3, 128, 128) for _ in range(2)]  # (1, 3, S, S) each
    with torch.inference_mode():
        alone = [backend.encode_image(image) for image in images]
    results: dict[int, object] = {}

    def encode(index: int) -> None:
        with torch.inference_mode():
            results[index] = batching.encode_image(images[index])

    threads = [threading.Thread(target=encode, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert (batching.batches, batching.frames) == (1, 2)  # one call for both frames
    for index in range(2):
        got, want = results[index], alone[index]
        assert got.pix_feat.shape == want.pix_feat.shape
        for a, b in [(got.pix_feat, want.pix_feat), (got.pix_pos, want.pix_pos),
                     (got.high_res[0], want.high_res[0]), (got.high_res[1], want.high_res[1])]:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_a_lone_frame_goes_alone_after_the_wait_and_trackers_accept_the_wrapper() -> None:
    backend = small_backend()
    batching = BatchingBackend(backend, max_batch=2, wait=0.01)
    tracker = StreamingTracker(backend.model, backend=batching)  # the model check passes
    tracker.track((torch.rand(96, 128, 3) * 255).byte().numpy())
    assert (batching.batches, batching.frames) == (1, 1)
