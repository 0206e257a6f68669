"""XLA's CPU convolutions inside a compiled loop: the minimal reproduction of the DCGAN --xla cliff.

The same convolution (the DCGAN generator's heaviest, batch 32, 28x28, 128 -> 64, 3x3), its input gradient and its
filter gradient, each compiled by XLA once alone and once as the body of a `for _ in tf.range(n)` loop in the same
compiled function; ms per call of the op, median of several runs, and oneDNN's time without XLA for scale. Upstream,
the same effect (convolutions in an XLA while-loop body run far slower on CPU) is jax-ml/jax#12868.

    python bench/xla_conv_loop.py [--runs 5] [--json bench/results/xla_conv_loop.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
from common import report
from rich.table import Table

from ganport.host import describe_cpu

LOOP = 4  # op calls per loop run


def median_ms(call, calls: int, runs: int) -> float:
    call()  # compile
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) / calls)
    return statistics.median(timings) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    images, kernel = tf.random.normal([32, 28, 28, 128]), tf.random.normal([3, 3, 128, 64])
    gradient = tf.random.normal([32, 28, 28, 64])
    strides = [1, 1, 1, 1]
    ops = {
        "Conv2D": lambda scale: tf.nn.conv2d(images * scale, kernel, strides, "SAME"),
        "Conv2DBackpropInput": lambda scale: tf.raw_ops.Conv2DBackpropInput(
            input_sizes=images.shape, filter=kernel, out_backprop=gradient * scale, strides=strides, padding="SAME"
        ),
        "Conv2DBackpropFilter": lambda scale: tf.raw_ops.Conv2DBackpropFilter(
            input=images * scale, filter_sizes=kernel.shape, out_backprop=gradient, strides=strides, padding="SAME"
        ),
    }
    rows = []
    for name, op in ops.items():

        def looped(count: tf.Tensor, op=op) -> tf.Tensor:
            total = tf.constant(0.0)
            for index in tf.range(count):  # each body's op reads the counter, so none is hoisted out of the loop
                total += tf.reduce_sum(op(1.0 + tf.cast(index, tf.float32) * 1e-9))
            return total

        single = tf.function(lambda op=op: tf.reduce_sum(op(1.0)), jit_compile=True)
        in_loop = tf.function(looped, jit_compile=True)
        plain = tf.function(lambda op=op: tf.reduce_sum(op(1.0)))
        row = {
            "op": name,
            "xla_alone_ms": median_ms(lambda f=single: f().numpy(), 1, args.runs),
            "xla_in_loop_ms": median_ms(lambda f=in_loop: f(tf.constant(LOOP)).numpy(), LOOP, args.runs),
            "onednn_ms": median_ms(lambda f=plain: f().numpy(), 1, args.runs),
        }
        row["loop_slowdown"] = row["xla_in_loop_ms"] / row["xla_alone_ms"]
        rows.append(row)
    table = Table(
        title=f"XLA CPU convolutions alone vs in a compiled loop, median of {args.runs} runs, TF {tf.__version__}, "
        f"{describe_cpu()}"
    )
    for column in ("op", "XLA alone ms", "XLA in a loop ms", "in loop / alone", "oneDNN (no XLA) ms"):
        table.add_column(column, justify="left" if column == "op" else "right")
    for row in rows:
        table.add_row(
            row["op"],
            f"{row['xla_alone_ms']:.1f}",
            f"{row['xla_in_loop_ms']:.1f}",
            f"{row['loop_slowdown']:.1f}x",
            f"{row['onednn_ms']:.1f}",
        )
    report(table, {"rows": rows}, args.json)


if __name__ == "__main__":
    main()
