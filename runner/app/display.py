"""What a person sees while ``glmrun run`` goes on: the live display, or a progress line.

Four modes, chosen by the CLI from the terminal and the options:

- ``live`` (text on a TTY): rich's ``Live`` redraws a few lines in place, transient (the
  summary replaces it). Each line is built for the console's current width: fields are
  dropped, least useful first, until it fits, so it never wraps (down to 40 columns). Log
  lines go through rich's handler on the same console, so they print above it, whole.
- ``lines`` (text without a TTY: cron, pipes): one plain progress line every
  ``run.progress_interval_s``.
- ``json``: a ``progress`` INFO event every ``run.progress_interval_s`` (machine logs).
- ``quiet`` (``-q``): nothing.

Batch jobs also get one line per batch submitted or collected (``BatchLines``, in ``live`` and
``lines``), taken from the batch engine's events, so the engine knows nothing of the display.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, Literal

from runner.core.stats import JobStats
from runner.logs import ECHO_ROOM, console, wrap_for_terminal

if TYPE_CHECKING:  # rich is imported when the live display starts, not with this module
    from rich.console import Console, ConsoleOptions, RenderResult
    from rich.live import Live

log = logging.getLogger(__name__)

Mode = Literal["live", "lines", "json", "quiet"]
MIN_BAR = 10  # a progress bar narrower than this says nothing: drop it
MAX_BATCH_ROWS = 5  # open batches listed under the job line; the rest are counted on the last
SHOWN_CHARS = 200  # an error example's URL or input line, at most (summary, status --errors)
Batches = Callable[[], list[dict[str, Any]]]


def fmt_int(n: int) -> str:
    return f"{n:,}"


def counted(*parts: tuple[int, str]) -> str:
    """The parts whose count is not 0, each with its count in place of ``{}``: ``counted((3,
    ", {} duplicate lines"), (0, " ({} to retry)"))`` is ``", 3 duplicate lines"``."""
    return "".join(text.format(fmt_int(n)) for n, text in parts if n)


def shown(key: str) -> str:
    """A URL or input line as an error example shows it, at most ``SHOWN_CHARS``: one of 20,000
    characters (refused as too long) or a long signed URL filled the terminal; its start says
    which it is (records and --json keep it whole)."""
    return key if len(key) <= SHOWN_CHARS else key[: SHOWN_CHARS - 1] + "…"


def fmt_duration(seconds: float) -> str:
    """``8.2s``, ``4m05s``, ``2h03m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def fmt_ago(seconds: float) -> str:
    if seconds < 1:
        return "just now"
    return f"{int(seconds)}s ago" if seconds < 60 else f"{fmt_duration(seconds)} ago"


def overall(stats: JobStats) -> tuple[int, int]:
    """(done, total) over the whole job: what earlier runs finished counts as done."""
    before = stats.done_before
    done = before + stats.done
    return done, max(before + stats.total, done)


def errors_by_kind(stats: JobStats, limit: int = 3) -> str:
    """``1301×2 429×1``: the most frequent error codes of this run."""
    top = sorted(stats.error_codes.items(), key=lambda kv: -kv[1])[:limit]
    return " ".join(f"{code}×{fmt_int(n)}" for code, n in top)


def spent(stats: JobStats, price: Any, currency: str) -> str:
    """Cost of the tokens counted so far, or '' without a price (the cost module is loaded
    by priced runs only)."""
    if price is None:
        return ""
    from runner.core.cost import cost_of, format_money

    amount = sum(cost_of(p, c, price, route) for route, (p, c) in stats.usage_by_route.items())
    return format_money(amount, currency)


def fields(stats: JobStats, price: Any = None, currency: str = "CNY") -> list[tuple[int, str]]:
    """The live line's fields in display order, each with a rank: higher ranks are dropped
    first when the line does not fit. ``""`` marks where the bar goes."""
    done, total = overall(stats)
    rate = stats.rate
    # with ``auto`` the limit is news (it moves with the account): in a narrow terminal what is
    # in flight, out of it, stays on the line longer than the bar and the earlier runs' count
    auto = stats.limit_since is not None
    out: list[tuple[int, str]] = [(0, stats.label), (6, "")]
    out.append((0, f"{fmt_int(done)}/{fmt_int(total)}"))
    if stats.done_before:
        out.append((6 if auto else 5, f"({fmt_int(stats.done_before)} done before)"))
    # rounded down: 100% only once everything is done (899/900 is 99%, while its retry waits)
    out.append((3, f"{100 * done // total}%" if total else "100%"))
    if stats.route != "batch":
        # a batch job's records arrive a whole batch at a time, after a wait the rate knows
        # nothing of: its rate and ETA would say hours while the batches below say seconds
        out.append((1, f"{rate:,.1f}/s"))
        if rate > 0 and total > done:
            out.append((2, f"eta {fmt_duration((total - done) / rate)}"))
    if stats.errors:
        out.append((1, f"err {fmt_int(stats.errors)}"))
        kinds = errors_by_kind(stats)
        if kinds:
            out.append((9, f"({kinds})"))
    if stats.route == "realtime" or stats.in_flight:
        # requests out of the limit now (with ``auto`` the controller's): a limit far above
        # what is in flight says the run is not limited by its concurrency
        out.append((5 if auto else 7, f"in flight {stats.in_flight}/{stats.concurrency}"))
    tokens = stats.prompt_tokens + stats.completion_tokens
    if tokens:
        out.append((10, f"{fmt_int(tokens)} tok"))
    money = spent(stats, price, currency)
    if money:
        out.append((4, money))
    return out


def fit_line(parts: list[tuple[int, str]], width: int) -> str:
    """Join ``parts`` with spaces, dropping the highest ranks until the line fits ``width``;
    the bar (``""``) counts ``MIN_BAR`` and then takes the room left (up to 30). Rank 0 is
    never dropped; the result is cropped, so it is never wider than ``width``."""
    parts = list(parts)

    def length() -> int:
        return sum(len(t) if t else MIN_BAR for _, t in parts) + len(parts) - 1

    while length() > width:
        worst = max(range(len(parts)), key=lambda i: (parts[i][0], i))
        if parts[worst][0] == 0:
            break
        parts.pop(worst)
    words = [t for _, t in parts]
    for i, (_, t) in enumerate(parts):
        if not t:
            words[i] = f"{{BAR:{min(30, MIN_BAR + width - length())}}}"
    line = " ".join(words)
    return line if "{BAR:" in line else line[:width]


def render_bar(line: str, done: int, total: int) -> str:
    """Replace the ``{BAR:n}`` placeholder with an n-character bar."""
    start = line.find("{BAR:")
    if start < 0:
        return line
    end = line.index("}", start)
    n = int(line[start + 5 : end])
    filled = n if not total else int(n * done / total)
    return line[:start] + "█" * filled + "░" * (n - filled) + line[end + 1 :]


def unsubmitted(b: dict[str, Any]) -> str:
    """A chunk before its batch exists (built, uploading, uploaded): ``chunk 3 (5,000
    requests)``."""
    lines = b.get("lines")
    size = f" ({fmt_int(lines)} requests)" if isinstance(lines, int) else ""
    return f"chunk {b.get('chunk', '?')}{size}"


def batch_line(b: dict[str, Any], width: int, now: float) -> str:
    """One open batch: id, status, done/total, when it was last polled; fitted to width."""
    parts: list[tuple[int, str]] = [(0, f"  {b.get('batch_id') or unsubmitted(b)}")]
    state = str(b.get("state") or "")
    # "built" is the local state's name: a person reads why there is no batch yet
    parts.append((0, "not submitted yet" if state == "built" else state))
    if b.get("total"):
        parts.append((1, f"{fmt_int(b.get('completed') or 0)}/{fmt_int(b['total'])}"))
    if b.get("polled_at"):
        parts.append((2, f"polled {fmt_ago(max(0.0, now - float(b['polled_at'])))}"))
    return fit_line(parts, width)


def more_line(rows: list[dict[str, Any]], width: int) -> str:
    """The open batches past the first few, counted by state: ``… 9 more (2 in_progress, 7
    not submitted yet)``. A job of 100,000 URLs has a dozen chunks; listing five and nothing
    more told a person that five was all there was."""
    return fit_line([(0, f"  … {fmt_int(len(rows))} more"), (1, f"({by_state(rows)})")], width)


def by_state(rows: list[dict[str, Any]]) -> str:
    """``2 in_progress, 7 not submitted yet``: open batches and chunks counted by state."""
    counts: dict[str, int] = {}
    for b in rows:
        state = str(b.get("state") or "")
        label = "not submitted yet" if state == "built" else state or "?"
        counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{fmt_int(n)} {label}" for label, n in counts.items())


def batches_text(rows: list[dict[str, Any]]) -> str:
    """The open batches on the plain progress line (cron, a pipe): ``batches 6 in_progress, 7
    not submitted yet; 9,648/48,000 lines done``. It said ``0/100,000 0% 0.0000 CNY`` for
    hours, with nothing to tell a stuck run from batches that are merely slow."""
    if not rows:
        return ""
    running = [b for b in rows if b.get("batch_id") and b.get("total")]
    done = sum(int(b.get("completed") or 0) + int(b.get("failed") or 0) for b in running)
    total = sum(int(b["total"]) for b in running)
    lines = f"; {fmt_int(done)}/{fmt_int(total)} lines done" if running else ""
    return f"batches {by_state(rows)}{lines}"


class LiveView:
    """The renderable rich's Live redraws: the job line, then one line per open batch."""

    def __init__(
        self,
        stats: JobStats,
        price: Any = None,
        currency: str = "CNY",
        batches: Batches | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.stats = stats
        self.price = price
        self.currency = currency
        self.batches = batches
        self.clock = clock
        self._batch_rows: list[dict[str, Any]] = []
        self._batch_read = 0.0
        self.height = 0  # lines in the frame last drawn

    def lines(self, width: int) -> list[str]:
        done, total = overall(self.stats)
        line = fit_line(fields(self.stats, self.price, self.currency), width)
        out = [render_bar(line, done, total)[:width]]
        now = self.clock()
        rows = self.open_batches(now)
        listed = rows if len(rows) <= MAX_BATCH_ROWS else rows[: MAX_BATCH_ROWS - 1]
        for b in listed:
            out.append(batch_line(b, width, now))
        if len(rows) > len(listed):
            out.append(more_line(rows[len(listed) :], width))
        return out

    def open_batches(self, now: float) -> list[dict[str, Any]]:
        """The state file, read at most once a second (it is small, but redraws are 4/s)."""
        if self.batches is None:
            return []
        if now - self._batch_read >= 1.0:
            self._batch_read = now
            with contextlib.suppress(Exception):  # a half-written file: keep the last rows
                self._batch_rows = [b for b in self.batches() if not b.get("finished")]
        return self._batch_rows

    def __rich_console__(self, c: Console, options: ConsoleOptions) -> RenderResult:
        from rich.text import Text

        # Two columns short of the width: Ctrl-C makes the terminal echo "^C" after the last
        # line; where that does not fit, it wraps onto a new row, rich then clears the wrong
        # row and the frame stayed on screen, stale, above the summary (80 columns in tmux).
        lines = self.lines(max(1, options.max_width - ECHO_ROOM))
        self.height = min(len(lines), options.height or len(lines))
        for line in lines:
            yield Text(line, no_wrap=True, overflow="crop")


def progress_text(stats: JobStats, price: Any = None, currency: str = "CNY") -> str:
    """The plain progress line without a TTY: every field, no bar (``describe: 120/3,000 ...``)."""
    words = [t for _, t in fields(stats, price, currency) if t]
    return f"{words[0]}: " + " ".join(words[1:])


class Display:
    """Shows one job's progress while it runs, in the chosen mode; ``async with`` it."""

    def __init__(
        self,
        stats: JobStats,
        mode: Mode,
        *,
        interval_s: float = 10.0,
        price: Any = None,
        currency: str = "CNY",
        batches: Batches | None = None,
        stream: IO[str] | None = None,
        con: Console | None = None,
    ):
        self.stats = stats
        self.mode = mode
        self.interval_s = interval_s
        self.view = LiveView(stats, price, currency, batches)
        self.stream = stream
        self.console = con or (console() if mode == "live" else None)
        self._task: asyncio.Task[None] | None = None
        self._live: Live | None = None
        self._batch_lines: BatchLines | None = None

    async def __aenter__(self) -> Display:
        if self.mode in ("live", "lines") and not _events_shown():
            self._batch_lines = BatchLines(self.echo)
            self._batch_lines.attach()
        if self.mode == "live":
            from rich.live import Live

            self._live = Live(
                self.view,
                console=self.console,
                refresh_per_second=4,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        elif self.mode in ("lines", "json"):
            self._task = asyncio.create_task(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._live is not None:
            self._live.stop()
        if self._batch_lines is not None:
            self._batch_lines.detach()

    def frame_gone(self) -> str:
        """The control codes (rich's) that erase the live frame, the terminal's ``^C`` echo
        beside it, and show the cursor rich hid; '' when no live display is up. For a second
        signal, which exits at once: it writes them itself, since ``Live.stop()`` takes locks
        the interrupted code may hold. Without them the stale frame stayed, the exit notice
        glued onto its ``^C``, and the shell was left with no cursor."""
        if self._live is None or not self._live.is_started:
            return ""
        from rich.control import Control
        from rich.segment import ControlType

        up = ((ControlType.CURSOR_UP, 1), (ControlType.ERASE_IN_LINE, 2))
        erase = Control(
            ControlType.CARRIAGE_RETURN,
            (ControlType.ERASE_IN_LINE, 2),
            *(up * max(0, self.view.height - 1)),
        )
        return erase.segment.text + Control.show_cursor(True).segment.text

    def echo(self, line: str) -> None:
        """A line for the person, above the live display when there is one."""
        if self.mode == "live" and self.console is not None:
            # wrapped at spaces, the rest indented, as warnings are: rich folded a long line
            # (the 'found … from an earlier run' one) at column 0, mid-sentence
            text = "\n".join(wrap_for_terminal(line, self.console.width))
            self.console.print(text, markup=False, highlight=False, crop=True, soft_wrap=False)
        else:
            print(line, file=self.stream or sys.stderr, flush=True)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self.show()

    def show(self) -> None:
        s = self.stats
        if self.mode == "lines":
            line = progress_text(s, self.view.price, self.view.currency)
            open_batches = batches_text(self.view.open_batches(self.view.clock()))
            line += f" · {open_batches}" if open_batches else ""
            print(line, file=self.stream or sys.stderr, flush=True)
        elif self.mode == "json":
            done, total = overall(s)
            log.info(
                "progress",
                extra={
                    "job": s.name,
                    "done": done,
                    "total": total,
                    "done_before": s.done_before,
                    "ok": s.ok,
                    "errors": s.errors,
                    "in_flight": s.in_flight,
                    "concurrency": s.concurrency,
                    "rate": round(s.rate, 1),
                },
            )


def _events_shown() -> bool:
    """-v: the INFO events (batch submitted...) are printed already; no second line for them."""
    handlers = logging.getLogger("runner").handlers
    return any(h.level <= logging.INFO for h in handlers)


class BatchLines(logging.Handler):
    """Turns the batch engine's ``batch submitted`` / ``batch collected`` events into one line
    each for a person (``describe: submitted batch_abc (1,000 lines)``)."""

    LOGGER = "runner.engine.batch"

    def __init__(self, echo: Callable[[str], None]):
        super().__init__(logging.INFO)
        self.echo = echo

    def attach(self) -> None:
        logging.getLogger(self.LOGGER).addHandler(self)

    def detach(self) -> None:
        logging.getLogger(self.LOGGER).removeHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        line = batch_event_line(record.getMessage(), vars(record))
        if line:
            self.echo(line)


def batch_event_line(event: str, f: dict[str, Any]) -> str | None:
    job, batch_id = f.get("job"), f.get("batch_id")
    if event == "batch submitted":
        n = int(f.get("lines") or 0)
        return f"{job}: submitted {batch_id} ({fmt_int(n)} line{'' if n == 1 else 's'})"
    if event == "batches resumed":
        return resumed_line(str(job), f)
    if event == "batch collected":
        parts = [f"{fmt_int(int(f.get('ok') or 0))} ok"]
        if f.get("failed"):
            # error records for good (1301 …), not the API's "failed" count, which also holds
            # the lines sent again: "2 failed" beside batches list's "18 failed" read as a bug
            parts.append(f"{fmt_int(int(f['failed']))} permanent errors")
        if f.get("resent"):
            how = {"realtime": " by realtime", "rebatch": " in a new batch"}
            parts.append(
                f"{fmt_int(int(f['resent']))} sent again{how.get(str(f.get('on_failure')), '')}"
            )
        if f.get("left"):
            parts.append(f"{fmt_int(int(f['left']))} left for a later run")
        if f.get("recorded"):  # on_failure: record
            parts.append(f"{fmt_int(int(f['recorded']))} recorded as errors the next run retries")
        if batch_id is None:  # dropped by batches cancel, or rejected: it said "collected None"
            what = f"chunk {f.get('chunk', '?')} ({f.get('status')}, no batch was created)"
            return f"{job}: {what}: {', '.join(parts[1:] or parts)}"
        return f"{job}: collected {batch_id} ({f.get('status')}): {', '.join(parts)}"
    return None


def resumed_line(job: str, f: dict[str, Any]) -> str:
    """``describe: found 1 batch (10,000 lines) and 2 chunks not yet submitted (15,000 lines)
    from an earlier run; collecting and submitting them, not sending their lines again``."""
    batches, waiting = int(f.get("batches") or 0), int(f.get("chunks_not_submitted") or 0)
    found, doing = [], []
    if batches:
        found.append(f"{fmt_int(batches)} batch{'es' if batches != 1 else ''}")
        found[-1] += f" ({fmt_int(int(f.get('lines') or 0))} lines)"
        doing.append("collecting")
    if waiting:
        lines = fmt_int(int(f.get("lines_not_submitted") or 0))
        found.append(f"{fmt_int(waiting)} chunk{'s' if waiting != 1 else ''} not yet submitted")
        found[-1] += f" ({lines} lines)"
        doing.append("submitting")
    one = batches + waiting == 1
    return (
        f"{job}: found {' and '.join(found)} from an earlier run; {' and '.join(doing)} "
        f"{'it' if one else 'them'}, not sending {'its' if one else 'their'} lines again"
    )
