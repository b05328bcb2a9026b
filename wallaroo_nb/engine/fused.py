"""Generated hot loops: one plain Python function per chain of steps, fed a whole chunk.

steps.py compiles each step into a closure that calls the next one: four or five
Python calls per value (the source's feed, the keyed entry, the state step's run,
the sink). For the common chains this module writes, once per chain, the source
text of a single function that runs the chunk's values through every step in one
loop, with the same code the closures run inlined (same error records, counters,
routing, and the same user functions, timed the same way), and compiles it.

A plan qualifies when no value can weigh 0 and nothing tracks event time or
watermarks (``eligible``): then every step is a map, a state step or a sink with
one child, so a source's steps form one chain, and so do the steps after a keyed
step (where values from other workers come in). Every other plan runs on the
closures, which stay the reference: tests/unit/test_fused.py runs plans both ways
and compares results, state, counters and errors, and ``source(...)`` shows the
code generated.

The function is compiled under a file name starting with ``FUSED_FILE`` (its lines
are in linecache, so tracebacks show them) and keeps the key of the keyed step it
runs in as the local ``k``, like steps.py's ``run``, for the watchdog's busy report;
``k`` is ``NO_KEY`` while a value is in steps before the first keyed one.
"""

from __future__ import annotations

import linecache
from typing import Any, Callable, Optional

from ..plan import Step, StepKind
from .runtime import Runtime

FUSED_FILE = "<wallaroo_nb fused"
NO_KEY = object()  # ``k`` before the first keyed step of a chain (see the docstring)


def eligible(rt: Runtime) -> bool:
    """Can this runtime's chains be fused (see the module docstring)?"""
    return rt.fused and not (rt.weighted or rt.track_event_time or rt.track_wm)


def chain(rt: Runtime, first: int) -> list[Step]:
    """The steps from step ``first`` down to its sink (each has one child here)."""
    steps, out = rt.plan.steps, []
    step = steps[first]
    while True:
        out.append(step)
        if step.is_sink:
            return out
        step = steps[step.children[0]]


def compile_chain(rt: Runtime, steps: list[Step], routed: bool, label: str) -> Callable:
    """The function ``fused_chain(vals)`` running ``steps`` (a chain) for each value;
    ``routed``: the first step routes by key (values read here), else it runs here
    (values another worker sent)."""
    text, env = source(rt, steps, routed)
    filename = f"{FUSED_FILE} {label}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    exec(compile(text, filename, "exec"), env)  # noqa: S102 - our own generated code
    return env["fused_chain"]


def source(rt: Runtime, steps: list[Step], routed: bool) -> tuple[str, dict]:
    """(source text, globals) of the chain's function (see compile_chain)."""
    env = {"on_error": rt.on_error, "filtered": rt.filtered, "done": rt.done, "ctx": rt.ctx,
           "me": rt.me, "route": rt.route, "miss": rt.route_miss, "NO_KEY": NO_KEY}
    body: list[str] = []
    keyed_before = False
    for n, step in enumerate(steps):
        i = step.id
        env[f"step{i}"] = step
        if step.is_sink:
            env[f"append{i}"] = rt.sink_buffers[i].append
            body.append(f"append{i}(v)")
        elif step.kind is StepKind.MAP:
            env[f"f{i}"] = _user_fn(step, rt)
            body += _map_lines(i)
        else:  # a state step
            env[f"f{i}"], env[f"states{i}"] = _user_fn(step, rt), rt.states[i]
            env[f"cls{i}"], env[f"keyf{i}"] = step.state_cls, step.key_fn
            route_here = routed or n > 0
            if route_here:
                env[f"pend{i}"] = rt.pending[i]
            body += _state_lines(i, step.key_fn is not None, route_here)
            keyed_before = True
    head = ["def fused_chain(vals):", "    for v in vals:"]
    if not steps[0].keyed and keyed_before:
        head.append("        k = NO_KEY")
    text = "\n".join(head + ["        " + line for line in body]) + "\n"
    return text, env


def _user_fn(step: Step, rt: Runtime) -> Callable:
    """The step's function, timed per call when metrics are on (as steps.py does)."""
    return rt.step_timer(step.id, step.fn) if rt.timing else step.fn


def _filtered(i: int) -> list[str]:
    return ["if v is None:", f"    filtered[{i}] += 1", "    done[0] += ctx.w", "    continue"]


def _map_lines(i: int) -> list[str]:
    """A computation: ``v`` becomes its output (on an error ``v`` is still the input)."""
    return ["try:", f"    v = f{i}(v)", "except Exception as e:",
            f"    on_error(step{i}, None, v, e)", "    continue", *_filtered(i)]


def _state_lines(i: int, has_key_fn: bool, route_here: bool) -> list[str]:
    """A state computation: key, route (park for the owner), state object, call."""
    if has_key_fn:
        lines = ["try:", f"    k = keyf{i}(v)", "except Exception as e:",
                 f'    on_error(step{i}, None, v, e, where="key extractor")', "    continue"]
    else:
        lines = ["k = None"]
    if route_here:
        lines += [
            "try:", "    w = route[k]", "except KeyError:", "    try:", "        w = miss(k)",
            "    except TypeError as e:",
            f'        on_error(step{i}, k, v, e, where="key extractor")', "        continue",
            "except TypeError as e:  # unhashable key",
            f'    on_error(step{i}, k, v, TypeError(f"key {{k!r}} is not hashable: {{e}}"), '
            'where="key extractor")',
            "    continue",
            "if w != me:", f"    pend{i}[w].append(v)", "    continue"]
    lines += [
        "try:", f"    s = states{i}[k]", "except KeyError:  # the key's first message here",
        "    try:", f"        s = states{i}[k] = cls{i}()",
        "    except Exception as e:", f'        on_error(step{i}, k, v, e, where="state class")',
        "        continue",
        "try:", f"    v = f{i}(v, s)", "except Exception as e:", f"    on_error(step{i}, k, v, e)",
        "    continue", *_filtered(i)]
    return lines


def chunk_feed(feed: Callable[[Any], None]) -> Callable[[list], None]:
    """A chunk function over a per-value feed (the closures' path)."""

    def each(vals: list) -> None:
        for v in vals:
            feed(v)

    return each


def chunk_feeds(rt: Runtime, sources: dict, remote: list) -> tuple[dict, list]:
    """(source id -> chunk function, step id -> chunk function for values from peers):
    generated where the plan is eligible, else loops over the closures' feeds.
    ``sources``: source id -> (its child step ids, its per-value feed)."""
    fuse = eligible(rt)
    by_source = {sid: compile_chain(rt, chain(rt, children[0]), True, f"source {sid}")
                 if fuse else chunk_feed(feed) for sid, (children, feed) in sources.items()}
    by_step: list[Optional[Callable]] = [None] * len(remote)
    for step in rt.plan.steps:
        if step.keyed:
            by_step[step.id] = (compile_chain(rt, chain(rt, step.id), False, f"step {step.id}")
                                if fuse else chunk_feed(remote[step.id]))
    return by_source, by_step
