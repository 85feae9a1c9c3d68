"""Tubelet embedding on CPU: Conv3d (kernel = stride) against the same map as one matmul.

    python bench/patch_embed.py

It uses torch only (no mmdistill import), so it needs no path set-up.
"""
import argparse
import time

import torch
import torch.nn.functional as F


def as_matmul(conv: torch.nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    b, c, t, h, w = x.shape
    tt, p, _ = conv.kernel_size
    blocks = x.reshape(b, c, t // tt, tt, h // p, p, w // p, p).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return F.linear(blocks.reshape(b, -1, c * tt * p * p), conv.weight.flatten(1), conv.bias)


def timed(fn, repeats=5):
    fn().sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        fn().sum().backward()
    return (time.perf_counter() - start) / repeats


def main():
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward + backward")
    for shape, dim in [((16, 3, 8, 64, 64), 128), ((16, 17, 8, 64, 64), 128),
                       ((4, 3, 16, 224, 384), 768)]:
        x = torch.randn(*shape, requires_grad=True)
        conv = torch.nn.Conv3d(shape[1], dim, (2, 16, 16), (2, 16, 16))
        conv_s = timed(lambda: conv(x).flatten(2).transpose(1, 2))
        mm_s = timed(lambda: as_matmul(conv, x))
        print(f"{'x'.join(map(str, shape))} -> {dim}: conv3d {1e3 * conv_s:.1f} ms, "
              f"matmul {1e3 * mm_s:.1f} ms, {conv_s / mm_s:.1f}x")


if __name__ == "__main__":
    main()
