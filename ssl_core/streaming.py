"""Streaming WebDataset shards: tar files read front to back from a path, a URL or a command.

A corpus larger than the local disk is stored as many ``.tar`` shards somewhere else (a web
server, an object store) and read as a stream, one shard at a time, never kept locally. Inside a
shard, members that share a *key* form one sample (the WebDataset convention):
``dir/n0144_10.jpg`` and ``dir/n0144_10.cls`` are the ``jpg`` and ``cls`` fields of the sample
with key ``dir/n0144_10``.

Where a shard can live (see :func:`expand_urls` and :func:`open_url`):

- a local path or ``file://`` URL;
- ``http://`` / ``https://`` URLs (read with the standard library);
- ``pipe:COMMAND``: the shard is what ``COMMAND`` writes to stdout, e.g.
  ``pipe:aws s3 cp s3://bucket/shard-000000.tar -`` or ``pipe:gsutil cat gs://b/x.tar``.
  A command runs only with an explicit opt-in: ``ssl run --allow-pipe`` or ``SSLKIT_ALLOW_PIPE=1``
  in the environment, never because a config file names it (see :func:`check_pipe_allowed`).

:class:`WebDatasetStream` splits the shards over (ranks x DataLoader workers) and is a
:class:`ssl_core.data.ResumableStream`, so a run can stop and resume mid-epoch: each worker's
position is a count of raw samples, and on resume those samples are read again but not decoded.
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import io
import os
import random
import re
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zlib
from pathlib import Path
from typing import IO, Any, Callable, Generator, Iterable, Iterator, Sequence

from ssl_core.data import ResumableStream
from ssl_core.errors import DataError
from ssl_core.files import SHARD_SUFFIXES, iter_files

__all__ = [
    "PIPE_ENV", "RawSample", "WebDatasetStream", "check_pipe_allowed", "expand_urls", "is_remote",
    "iter_shard_samples", "iter_tar_samples", "load_samples", "never_run_pipes", "open_url", "shuffle_buffer",
    "split_key",
]

RawSample = dict[str, Any]
"""One undecoded sample: ``{"__key__": str, "__url__": str, EXT: bytes, ...}``."""

SPEC_HELP = (
    "Pass a .tar file, a folder of .tar files, a glob ('shards/*.tar'), brace notation "
    "('shard-{000000..000099}.tar'), an http(s):// URL or 'pipe:COMMAND' (e.g. "
    "'pipe:aws s3 cp s3://bucket/shard-{000..009}.tar -'); join several with '::'."
)
_BRACES = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CHUNK = 1 << 16


# ---------------------------------------------------------------------- running commands: opt-in only
PIPE_ENV = "SSLKIT_ALLOW_PIPE"
"""Environment variable that allows ``pipe:`` shard commands when set to ``1`` (``ssl run
--allow-pipe`` sets it, so DataLoader workers and torchrun ranks inherit it)."""
_NEVER_RUN_PIPES = False  # set by never_run_pipes(): ssl eval / ssl report


@contextlib.contextmanager
def never_run_pipes() -> Iterator[None]:
    """Within this block no ``pipe:`` command runs, whatever the environment says (``ssl eval``).

    Datasets may still be *built* from ``pipe:`` specs (``ssl eval`` rebuilds a run's training
    stream but never reads it); opening one raises :class:`~ssl_core.errors.DataError`."""
    global _NEVER_RUN_PIPES
    before, _NEVER_RUN_PIPES = _NEVER_RUN_PIPES, True
    try:
        yield
    finally:
        _NEVER_RUN_PIPES = before


def check_pipe_allowed(url: str) -> None:
    """Raise :class:`~ssl_core.errors.DataError` if ``url`` is a ``pipe:`` spec that may not run.

    A shard spec can come from a config file or a downloaded run folder, and ``pipe:`` runs its
    text in a shell: that needs the user's explicit opt-in on the command line or in the
    environment, never a file's say-so."""
    if not url.startswith("pipe:"):
        return
    command = url[len("pipe:"):].strip()
    if _NEVER_RUN_PIPES:
        raise DataError(
            f"Not running the shard command {command!r} (from {url!r}): `ssl eval` and `ssl report` never run "
            "pipe: commands. Copy those shards to a local folder and point the run's config.yaml at them "
            "(e.g. dataset_kwargs.eval_path)."
        )
    if os.environ.get(PIPE_ENV, "").strip() != "1":
        raise DataError(
            f"The shard spec {url!r} would run the shell command {command!r}. Commands from pipe: specs run only "
            f"when you allow them: pass --allow-pipe to `ssl run`, or set {PIPE_ENV}=1 in the environment "
            "(a config file alone cannot). Check the command first if the spec came from someone else's file."
        )


# ---------------------------------------------------------------------- names -> shard list
def is_remote(url: str) -> bool:
    """True for shards read over the network or from a command (``http(s)://``, ``pipe:``)."""
    return url.startswith(("http://", "https://", "pipe:"))


def _expand_braces(spec: str) -> list[str]:
    """``a-{00..02}.tar`` -> ``a-00.tar, a-01.tar, a-02.tar``; ``{x,y}`` lists alternatives."""
    m = _BRACES.search(spec)
    if m is None:
        return [spec]
    head, body, tail = spec[: m.start()], m.group(1), spec[m.end():]
    rng = _RANGE.fullmatch(body)
    if rng:
        lo, hi = rng.group(1), rng.group(2)
        if int(hi) < int(lo):
            raise DataError(f"Shard spec {spec!r}: the range {{{body}}} counts down; write {{{hi}..{lo}}}.")
        # a leading zero means fixed width (shard-{000..123}); otherwise plain numbers
        width = len(lo) if lo.startswith("0") else 0
        items = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    elif "," in body:
        items = body.split(",")
    else:  # not a pattern, e.g. a literal brace in a shell command: leave it
        return [head + "{" + body + "}" + u for u in _expand_braces(tail)]
    return [u for item in items for u in _expand_braces(head + item + tail)]


def _local_path(url: str) -> str:
    """The filesystem path of a local spec (``file://`` URLs are unwrapped)."""
    if url.startswith("file://"):
        return urllib.request.url2pathname(urllib.parse.urlparse(url).path)
    return url


def expand_urls(spec: str) -> list[str]:
    """The shard URLs named by ``spec``, in order.

    ``spec`` is one or more parts joined by ``::``. Each part is brace-expanded
    (``shard-{000000..000123}.tar`` keeps the zero padding; ``{a,b}`` lists alternatives).
    Remote items (``http(s)://``, ``pipe:``) are kept as written. A local item may be a file, a
    folder (its ``*.tar`` files, recursively, sorted) or a glob (sorted matches). Raises
    :class:`~ssl_core.errors.DataError` naming the spec when something names no shard.
    """
    if not spec or not spec.strip():
        raise DataError(f"Empty shard spec. {SPEC_HELP}")
    out: list[str] = []
    for part in spec.split("::"):
        part = part.strip()
        if not part:
            continue
        missing: list[str] = []
        for item in _expand_braces(part):
            if is_remote(item):
                out.append(item)
                continue
            if _SCHEME.match(item) and not item.startswith("file://"):
                scheme = item.split("://", 1)[0]
                raise DataError(
                    f"Shard {item!r} (from {spec!r}): {scheme}:// is not read directly. Stream it through "
                    f"a command instead, e.g. 'pipe:aws s3 cp {item} -' or 'pipe:gsutil cat {item}'."
                )
            path = _local_path(item)
            p = Path(path)
            if p.is_dir():
                found = [str(q) for q in sorted(iter_files(p, SHARD_SUFFIXES))]  # following links
                if not found:
                    raise DataError(f"Folder {path} (from shard spec {spec!r}) holds no .tar files. {SPEC_HELP}")
                out += found
            elif p.is_file():
                out.append(path)
            elif any(ch in path for ch in "*?["):
                found = sorted(q for q in glob.glob(path, recursive=True) if Path(q).is_file())
                if not found:
                    missing.append(path)
                out += found
            else:
                missing.append(path)
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise DataError(f"No shard found at {shown} (from shard spec {spec!r}). Check the path or pattern. {SPEC_HELP}")
    if not out:
        raise DataError(f"Shard spec {spec!r} names no shards. {SPEC_HELP}")
    return out


# ---------------------------------------------------------------------- opening one shard
class _PipeStream(io.RawIOBase):
    """stdout of a shell command as a readable binary stream.

    stderr goes to a temporary file rather than a pipe: a command that writes a lot to stderr
    while we only read stdout would otherwise block forever on a full pipe.
    """

    def __init__(self, url: str) -> None:
        check_pipe_allowed(url)  # the one place a command is started: never without the opt-in
        super().__init__()
        self.url = url
        self.command = url[len("pipe:"):].strip()
        self._eof = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(self.command, shell=True, stdout=subprocess.PIPE, stderr=self._stderr)
        except OSError as exc:
            self._stderr.close()
            super().close()
            raise DataError(f"Could not start shard command {self.command!r} (from {url}): {exc}") from exc
        assert self._proc.stdout is not None
        self._out: IO[bytes] = self._proc.stdout

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._out.read(size if size is not None else -1)
        if not data and size != 0:
            self._eof = True
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _stderr_tail(self, lines: int = 5) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) if text else "(nothing on stderr)"

    def close(self) -> None:
        """Wait for the command. If all its output was read, a non-zero exit is an error;
        if the reader stopped early, the command is killed and its status ignored."""
        if self.closed or self._proc is None:
            return
        try:
            self._out.close()
            if not self._eof and self._proc.poll() is None:
                # the reader stopped early (end of a limit, epoch or run): the rest is not wanted
                self._proc.kill()
            try:
                status = self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                status = self._proc.wait()
            if self._eof and status != 0:
                raise DataError(
                    f"Shard command {self.command!r} (from {self.url}) exited with status {status}: "
                    f"{self._stderr_tail()}. Run it in a shell to check it writes the tar to stdout."
                )
        finally:
            self._stderr.close()
            super().close()


def open_url(url: str, timeout: float = 60.0) -> IO[bytes]:
    """Open one shard for sequential reading.

    Local paths and ``file://`` URLs open the file; ``http(s)://`` URLs are fetched with
    ``urllib`` (``timeout`` seconds per blocking read); ``pipe:COMMAND`` runs the command in a
    shell and reads its stdout. Closing a pipe whose output was read to the end raises
    :class:`~ssl_core.errors.DataError` (naming the command and the end of its stderr) if the
    command failed. Errors opening a shard raise ``DataError`` naming the URL.
    """
    if url.startswith("pipe:"):
        return _PipeStream(url)  # type: ignore[return-value]
    if url.startswith(("http://", "https://")):
        try:
            return urllib.request.urlopen(url, timeout=timeout)  # type: ignore[no-any-return]
        except urllib.error.HTTPError as exc:
            raise DataError(f"Could not fetch shard {url}: HTTP {exc.code} {exc.reason}. Check the URL "
                            "and that the server allows the request.") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"Could not connect to fetch shard {url}: {reason}. Check the host, port and network.") from exc
    path = _local_path(url)
    try:
        return open(path, "rb")
    except OSError as exc:
        raise DataError(f"Could not open shard {path}: {exc.strerror or exc}. Check the path.") from exc


# ---------------------------------------------------------------------- tar -> samples
def split_key(member_name: str) -> tuple[str, str]:
    """``"dir/abc.seg.png"`` -> ``("dir/abc", "seg.png")``: the key is the path up to the first
    dot of the file name; the field is the rest, lower-cased."""
    head, _, base = member_name.rpartition("/")
    stem, dot, field = base.partition(".")
    key = f"{head}/{stem}" if head else stem
    return key, field.lower() if dot else ""


# Errors a damaged or interrupted stream can raise while tarfile reads it (network reads fail
# with OSError/HTTPException, compressed shards with zlib/EOF errors).
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, ValueError, zlib.error, http.client.HTTPException)


def _read_tar(stream: IO[bytes], url: str) -> Generator[RawSample, None, str | None]:
    """Samples of one tar stream; returns a description of the damage, or ``None`` if the
    archive ended properly (see :func:`iter_tar_samples`)."""
    # tarfile stops silently at a header that is cut off or damaged past the first member. To
    # tell that from a proper end-of-archive block, record what the last header parse raised.
    last_header: list[BaseException | None] = [None]

    class _Info(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf: bytes, encoding: str, errors: str) -> tarfile.TarInfo:
            try:
                info = super().frombuf(buf, encoding, errors)
            except tarfile.HeaderError as exc:
                last_header[0] = exc
                raise
            last_header[0] = None
            return info

    current: RawSample | None = None
    last_key: str | None = None
    problem: str | None = None
    try:
        tar = tarfile.open(fileobj=stream, mode="r|*", tarinfo=_Info)
    except _READ_ERRORS as exc:
        return f"before its first complete sample (not a readable tar archive: {type(exc).__name__}: {exc})"
    with tar:
        while True:
            try:
                member = tar.next()
                if member is None:
                    if not isinstance(last_header[0], tarfile.EOFHeaderError):
                        kind = type(last_header[0]).__name__ if last_header[0] is not None else "no header"
                        problem = f"the archive stops without its end-of-archive block ({kind})"
                    break
                tar.members = []  # streaming: do not keep every header of a large shard in memory
                if not member.isfile():
                    continue
                key, field = split_key(member.name)
                if not field:
                    continue
                fh = tar.extractfile(member)
                payload = fh.read() if fh is not None else b""
                if len(payload) != member.size:
                    raise tarfile.ReadError(f"member {member.name} has {len(payload)} of {member.size} bytes")
            except _READ_ERRORS as exc:
                problem = f"{type(exc).__name__}: {exc}"
                break
            if current is not None and current["__key__"] != key:
                last_key = current["__key__"]
                yield current  # outside the try: the consumer's errors are not shard damage
                current = None
            if current is None:
                current = {"__key__": key, "__url__": url}
            current[field] = payload
    if problem is None:
        if current is not None:
            yield current
        return None
    # the sample being assembled may lack fields that came after the damage: it is dropped
    after = f"after sample {last_key!r}" if last_key is not None else "before its first complete sample"
    return f"{after} ({problem})"


def _warn_damage(url: str, problem: str) -> None:
    warnings.warn(f"WebDataset shard {url} is truncated or corrupt {problem}; skipping the rest of this shard.",
                  stacklevel=3)


def iter_tar_samples(stream: IO[bytes], url: str) -> Iterator[RawSample]:
    """Samples of one tar stream, read strictly front to back (never seeking).

    Consecutive members with the same key form a sample ``{"__key__", "__url__", FIELD: bytes}``.
    Members without a field (no dot in the name) and non-files are ignored. Compressed tars
    (``.tar.gz`` ...) are read too. If the shard is truncated or corrupt, a warning names the URL
    and the last complete sample; the samples before the damage are yielded and the shard ends.
    """
    problem = yield from _read_tar(stream, url)
    if problem is not None:
        _warn_damage(url, problem)


def iter_shard_samples(url: str, timeout: float = 60.0) -> Iterator[RawSample]:
    """Open ``url`` (:func:`open_url`), yield its samples (:func:`iter_tar_samples`), close it.

    A pipe whose command failed raises :class:`~ssl_core.errors.DataError` once its output is
    used up (that explains an empty or cut-off shard better than a damage warning); a reader
    that stops early just ends the command.
    """
    stream = open_url(url, timeout)
    try:
        problem = yield from _read_tar(stream, url)
        if problem is None:
            # read the archive's padding too, so a command reaches its end and reports its status
            try:
                while stream.read(_CHUNK):
                    pass
            except _READ_ERRORS:
                pass  # damage after the end-of-archive block: every sample is already out
    except BaseException:
        # stopped early (GeneratorExit) or failing: closing must not raise over that
        try:
            stream.close()
        except DataError:
            pass
        raise
    stream.close()  # a failed command raises DataError here
    if problem is not None:
        _warn_damage(url, problem)


def _iter_shards(urls: Sequence[str], timeout: float) -> Generator[RawSample, None, None]:
    """Samples of several shards, one after another (closing this closes the open shard)."""
    for url in urls:
        yield from iter_shard_samples(url, timeout)


def shuffle_buffer(items: Iterable[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """Approximate shuffle of a stream with a buffer of ``size`` items (deterministic for a
    given ``rng`` state): each new item replaces a random buffered one, which is yielded."""
    source = iter(items)
    try:
        if size <= 1:
            yield from source
            return
        buf: list[Any] = []
        for item in source:
            if len(buf) < size:
                buf.append(item)
                continue
            j = rng.randrange(size)
            buf[j], item = item, buf[j]
            yield item
        rng.shuffle(buf)
        yield from buf
    finally:
        close = getattr(source, "close", None)
        if close is not None:  # stop the shard being read now (a pipe's command is ended)
            close()


# ---------------------------------------------------------------------- the dataset
class WebDatasetStream(ResumableStream):
    """WebDataset shards as a resumable stream for the Trainer.

    Each epoch the shard list is permuted with a generator seeded by ``(seed, epoch)`` and slot
    ``s`` of ``R x W`` (ranks x DataLoader workers) reads shards ``s, s + R*W, ...`` of it, so
    slots never share a shard and together read every shard once. A shard is the unit of
    splitting: there must be at least ``R x W`` shards. ``shuffle_buffer`` > 1 mixes samples
    across that many neighbours, seeded by ``(seed, epoch, slot)``, so the order is still
    reproducible and resumable.

    ``decode(raw) -> sample | None`` turns a raw sample (:data:`RawSample`) into the training
    sample; it must be picklable (a module-level function or ``functools.partial``) because
    DataLoader workers receive a copy of the dataset.

    With ``samples_per_epoch`` (samples in one pass over all shards, all ranks together) the
    dataset has a ``len()``, so the Trainer can turn ``train.epochs`` into steps; without it the
    object has no length and the run needs ``train.steps``.
    """

    def __init__(
        self,
        urls: Sequence[str],
        decode: Callable[[RawSample], dict[str, Any] | None],
        shuffle_buffer: int = 0,
        seed: int = 0,
        *,
        samples_per_epoch: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        super().__init__()
        if isinstance(urls, str):
            urls = expand_urls(urls)
        if not urls:
            raise DataError(f"WebDatasetStream needs at least one shard URL. {SPEC_HELP}")
        if not _NEVER_RUN_PIPES:  # refuse before training starts, not in a DataLoader worker
            for url in urls:  # (ssl eval builds a run's stream but never reads it: opening still refuses)
                check_pipe_allowed(url)
        if samples_per_epoch is not None and samples_per_epoch <= 0:
            raise DataError(f"samples_per_epoch must be positive, got {samples_per_epoch}.")
        self.urls = list(urls)
        self.decoder = decode
        self.shuffle_buffer, self.seed = int(shuffle_buffer), int(seed)
        self.samples_per_epoch = samples_per_epoch
        self.timeout = timeout

    def shards_for(self, slot: int, num_slots: int, epoch: int) -> list[str]:
        """The shards slot ``slot`` of ``num_slots`` reads in ``epoch``, in reading order."""
        if len(self.urls) < num_slots:
            ranks = max(1, self.world_size)
            workers = max(1, num_slots // ranks)
            raise DataError(
                f"{len(self.urls)} shards cannot feed {ranks} ranks x {workers} workers: write more shards "
                "or lower train.num_workers. Each DataLoader worker of each process reads whole shards, "
                "so there must be at least ranks x workers of them."
            )
        order = list(self.urls)
        random.Random(f"shards/{self.seed}/{epoch}").shuffle(order)
        return order[slot::num_slots]

    def iter_raw(self, slot: int, num_slots: int, epoch: int) -> Iterator[RawSample]:
        """Raw samples of this slot's shards, one shard after another, through the shuffle buffer."""
        shards = self.shards_for(slot, num_slots, epoch)
        raw = _iter_shards(shards, self.timeout)
        if self.shuffle_buffer > 1:
            raw = shuffle_buffer(raw, self.shuffle_buffer, random.Random(f"buffer/{self.seed}/{epoch}/{slot}"))
        return raw

    def __len__(self) -> int:
        """``samples_per_epoch``. Without it a stream has no length: ``len()`` raises TypeError,
        as it does for any unsized iterable, and the Trainer then asks for ``train.steps``."""
        if self.samples_per_epoch is None:
            raise TypeError("this WebDatasetStream has no length; give it samples_per_epoch")
        return self.samples_per_epoch

    def decode(self, raw: RawSample) -> dict[str, Any] | None:
        """The ``decode`` callable's sample; an exception there is reported and the sample skipped."""
        try:
            return self.decoder(raw)
        except Exception as exc:  # a bad sample must not end a long run
            warnings.warn(f"Skipping sample {raw.get('__key__')!r} of shard {raw.get('__url__')}: "
                          f"{type(exc).__name__}: {exc}", stacklevel=2)
            return None


def load_samples(
    urls: str | Sequence[str], decode: Callable[[RawSample], dict[str, Any] | None], limit: int,
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """Up to ``limit`` decoded samples from ``urls`` (a spec or a list), shards in the given
    order; unreadable samples (``decode`` returned ``None``) are skipped. Reading stops as soon
    as ``limit`` is reached, e.g. to hold a small labelled evaluation set in memory."""
    if isinstance(urls, str):
        urls = expand_urls(urls)
    out: list[dict[str, Any]] = []
    if limit <= 0:
        return out
    from tqdm.auto import tqdm

    raw = _iter_shards(urls, timeout)
    bar = tqdm(total=limit, desc="reading evaluation samples", unit="sample", leave=False)
    try:
        for item in raw:
            sample = decode(item)
            if sample is not None:
                out.append(sample)
                bar.update(1)
                if len(out) >= limit:
                    break
    finally:
        bar.close()
        raw.close()  # stop the current shard's reader (and its command) now, not at garbage collection
    return out
