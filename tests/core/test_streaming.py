"""Streaming WebDataset shards (ssl_core.streaming): shard specs, local/http/pipe sources,
splitting over ranks x workers, deterministic order, resume by skipping, damaged data."""

from __future__ import annotations

import gc
import functools
import http.server
import io
import pickle
import shlex
import tarfile
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
from torch.utils.data import DataLoader

from ssl_core.data import POSITION_KEY, WORKER_KEY, ResumableStream
from ssl_core.errors import DataError
from ssl_core.streaming import (
    WebDatasetStream, expand_urls, iter_shard_samples, iter_tar_samples, load_samples,
    open_url, split_key,
)

SHARD_SIZES = [5, 3, 6, 4, 5, 2]  # samples per shard: uneven on purpose


def _text(shard: int, i: int) -> bytes:
    # ~700 bytes: every payload spans two tar blocks, so a cut can land inside member data
    return (f"shard {shard} sample {i} " * 40).encode()[:700]


def write_shard(path: Path, shard: int, n: int, prefix: str = "") -> None:
    """A shard of ``n`` samples, each ``KEY.txt`` + ``KEY.cls`` (+ a directory member)."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        d = tarfile.TarInfo("meta")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        for i in range(n):
            key = f"{prefix}s{shard}_{i:03d}"
            for ext, payload in ((".txt", _text(shard, i)), (".CLS", str(i % 3).encode())):
                info = tarfile.TarInfo(key + ext)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


@pytest.fixture()
def shards(tmp_path: Path) -> Path:
    root = tmp_path / "shards"
    root.mkdir()
    for s, n in enumerate(SHARD_SIZES):
        write_shard(root / f"part-{s:06d}.tar", s, n, prefix="d/" if s == 0 else "")
    return root


@pytest.fixture()
def http_root(shards: Path) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` serving the shard folder (a local server, no network)."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(shards)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def all_keys() -> list[str]:
    return sorted(f"{'d/' if s == 0 else ''}s{s}_{i:03d}" for s, n in enumerate(SHARD_SIZES) for i in range(n))


def keys(samples: list[dict[str, Any]]) -> list[str]:
    return [s["__key__"] for s in samples]


def drop_every_fifth(raw: dict[str, Any]) -> dict[str, Any] | None:
    """A decode that finds some samples unreadable."""
    return None if raw["__key__"].endswith(("0", "5")) else dict(raw)


# ---------------------------------------------------------------------- specs
def test_expand_urls_braces_lists_folders_and_globs(shards: Path) -> None:
    spec = str(shards / "part-{000000..000002}.tar")
    assert [Path(u).name for u in expand_urls(spec)] == ["part-000000.tar", "part-000001.tar", "part-000002.tar"]
    both = expand_urls(str(shards / "part-00000{0,1}.tar") + "::" + str(shards / "part-{000004..000005}.tar"))
    assert [Path(u).name[5:11] for u in both] == ["000000", "000001", "000004", "000005"]
    assert expand_urls(str(shards)) == [str(p) for p in sorted(shards.glob("*.tar"))]
    assert len(expand_urls(str(shards / "part-*.tar"))) == 6
    assert expand_urls((shards / "part-000003.tar").as_uri()) == [str(shards / "part-000003.tar")]
    # remote specs are kept as written after brace expansion, zero padding included
    assert expand_urls("http://h/x-{08..11}.tar") == [f"http://h/x-{i}.tar" for i in ("08", "09", "10", "11")]
    assert expand_urls("https://h/a-{1..3}.tar::pipe:aws s3 cp s3://b/y-{0009..0010}.tar -") == [
        "https://h/a-1.tar", "https://h/a-2.tar", "https://h/a-3.tar",
        "pipe:aws s3 cp s3://b/y-0009.tar -", "pipe:aws s3 cp s3://b/y-0010.tar -",
    ]
    assert split_key("a/b/n0144_10.Seg.PNG") == ("a/b/n0144_10", "seg.png")


def test_expand_urls_errors_name_the_spec_and_the_fix(shards: Path, tmp_path: Path) -> None:
    missing = str(shards / "part-{000005..000007}.tar")
    with pytest.raises(DataError, match="part-000006.tar") as err:
        expand_urls(missing)
    assert missing in str(err.value) and "pipe:COMMAND" in str(err.value)
    with pytest.raises(DataError, match="nothing-"):
        expand_urls(str(tmp_path / "nothing-*.tar"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no .tar files"):
        expand_urls(str(tmp_path / "empty"))
    with pytest.raises(DataError, match="pipe:aws s3 cp s3://bucket/x.tar -"):
        expand_urls("s3://bucket/x.tar")
    with pytest.raises(DataError, match="counts down"):
        expand_urls("http://h/x-{9..1}.tar")


# ---------------------------------------------------------------------- sources
def test_path_http_and_pipe_give_identical_samples(shards: Path, http_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLKIT_ALLOW_PIPE", "1")  # the pipe: specs here are the test's own
    names = [f"part-{i:06d}.tar" for i in range(3)]
    local = load_samples([str(shards / n) for n in names], dict, 1000)
    over_http = load_samples(expand_urls(http_root + "/part-{000000..000002}.tar"), dict, 1000)
    piped = load_samples([f"pipe:cat {shlex.quote(str(shards / n))}" for n in names], dict, 1000)
    strip = lambda ss: [{k: v for k, v in s.items() if k != "__url__"} for s in ss]  # noqa: E731
    assert len(local) == sum(SHARD_SIZES[:3])
    assert strip(local) == strip(over_http) == strip(piped)
    first = local[0]
    assert first["__key__"] == "d/s0_000" and first["cls"] == b"0" and first["txt"] == _text(0, 0)
    assert set(first) == {"__key__", "__url__", "txt", "cls"}  # directory member ignored, field lower-cased
    assert over_http[0]["__url__"] == http_root + "/part-000000.tar"
    assert load_samples(str(shards), drop_every_fifth, 4) == [s for s in local if drop_every_fifth(s)][:4]


def test_stopping_early_ends_a_pipe_without_error(shards: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLKIT_ALLOW_PIPE", "1")  # the pipe: specs here are the test's own
    url = f"pipe:cat {shards / 'part-000002.tar'}"
    it = iter_shard_samples(url)
    assert next(it)["__key__"] == "s2_000"
    it.close()  # the command is killed; its status (SIGPIPE/SIGKILL) is not an error
    assert len(load_samples([url], dict, 2)) == 2


def test_source_errors_name_the_url_or_command(shards: Path, http_root: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSLKIT_ALLOW_PIPE", "1")  # the pipe: specs here are the test's own
    with pytest.raises(DataError, match="Could not open shard .*gone.tar"):
        open_url(str(tmp_path / "gone.tar"))
    url = http_root + "/part-000099.tar"
    with pytest.raises(DataError, match="404") as err:
        list(iter_shard_samples(url))
    assert url in str(err.value)
    with pytest.raises(DataError, match="Could not connect"):
        open_url("http://127.0.0.1:9/x.tar", timeout=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a failed command is an error, not a damaged-shard warning
        with pytest.raises(DataError, match="cat /no/such/dir/x.tar") as err:
            list(iter_shard_samples("pipe:cat /no/such/dir/x.tar"))
    assert "No such file" in str(err.value)
    good = shards / "part-000001.tar"
    with pytest.raises(DataError, match=r"exited with status 3: .*boom"):
        load_samples([f"pipe:cat {good}; echo boom >&2; exit 3"], dict, 100)


# ---------------------------------------------------------------------- damage
def _member_offsets(path: Path) -> list[tuple[str, int, int]]:
    with tarfile.open(path) as tar:
        return [(m.name, m.offset, m.offset_data) for m in tar.getmembers()]


@pytest.mark.parametrize("where", ["data", "header_boundary", "mid_header", "garbage_header"])
def test_damaged_shard_warns_and_keeps_earlier_samples(shards: Path, tmp_path: Path, where: str) -> None:
    src = (shards / "part-000002.tar").read_bytes()
    members = _member_offsets(shards / "part-000002.tar")
    name, offset, offset_data = next(m for m in members if m[0] == "s2_003.txt")
    if where == "data":
        damaged = src[: offset_data + 600]
    elif where == "header_boundary":
        damaged = src[:offset]
    elif where == "mid_header":
        damaged = src[: offset + 100]
    else:
        damaged = src[:offset] + b"\x07" * 512 + src[offset + 512:]
    bad = tmp_path / "bad.tar"
    bad.write_bytes(damaged)
    with pytest.warns(UserWarning, match=r"bad.tar is truncated or corrupt after sample 's2_001'"):
        got = keys(load_samples([str(bad), str(shards / "part-000003.tar")], dict, 100))
    # s2_002 was being assembled when the damage came (it may miss fields): dropped with the rest
    assert got == ["s2_000", "s2_001"] + [f"s3_{i:03d}" for i in range(SHARD_SIZES[3])]
    with pytest.warns(UserWarning, match="before its first complete sample"):
        assert list(iter_tar_samples(io.BytesIO(b"not a tar file at all" * 40), "junk.tar")) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact shard gives no warning
        assert len(list(iter_tar_samples(io.BytesIO(src), "ok.tar"))) == SHARD_SIZES[2]


# ---------------------------------------------------------------------- the resumable stream
def _epoch_keys(stream: WebDatasetStream, epoch: int, world: int, workers: int) -> list[list[str]]:
    out = []
    for rank in range(world):
        stream.set_state(epoch, rank, world)
        loader = DataLoader(stream, batch_size=None, num_workers=workers)
        out.append([s["__key__"] for s in loader])
    return out


def test_ranks_x_workers_read_every_sample_once(shards: Path) -> None:
    stream = WebDatasetStream(expand_urls(str(shards)), dict, shuffle_buffer=4, seed=3)
    per_rank = _epoch_keys(stream, epoch=0, world=2, workers=2)
    seen = per_rank[0] + per_rank[1]
    assert sorted(seen) == all_keys()  # every sample once, none twice
    assert set(per_rank[0]).isdisjoint(per_rank[1]) and all(per_rank)
    # the workers' samples carry their worker id and running position
    stream.set_state(0, 1, 2)
    samples = list(DataLoader(stream, batch_size=None, num_workers=2))
    for w in (0, 1):
        positions = [int(s[POSITION_KEY]) for s in samples if int(s[WORKER_KEY]) == w]
        assert positions == list(range(1, len(positions) + 1))
    # the same split again in the next epoch covers everything too, in another order
    epoch1 = _epoch_keys(stream, epoch=1, world=2, workers=2)
    assert sorted(epoch1[0] + epoch1[1]) == all_keys() and epoch1 != per_rank


def test_order_depends_only_on_seed_and_epoch(shards: Path) -> None:
    urls = expand_urls(str(shards))

    def order(seed: int, epoch: int) -> list[str]:
        stream = WebDatasetStream(urls, dict, shuffle_buffer=5, seed=seed)
        stream.set_state(epoch)
        return [s["__key__"] for s in stream]

    e0 = order(0, 0)
    assert sorted(e0) == all_keys()
    assert order(0, 0) == e0  # same seed and epoch: same order
    assert order(0, 1) != e0 and sorted(order(0, 1)) == all_keys()
    assert order(1, 0) != e0
    # without a buffer each shard is read in its own order, shards in a permuted order
    plain = WebDatasetStream(urls, dict)
    got = [s["__key__"] for s in plain]
    assert got != all_keys() and sorted(got) == all_keys()


@pytest.mark.parametrize("decode", [dict, drop_every_fifth], ids=["all_readable", "some_unreadable"])
def test_skip_resumes_exactly_after_k_raw_items(shards: Path, decode: Any) -> None:
    stream = WebDatasetStream(expand_urls(str(shards)), decode, shuffle_buffer=6, seed=7)
    stream.set_state(epoch=2)
    full = list(stream)
    for k in (0, 1, 7, 12):
        consumed = [s for s in full if s[POSITION_KEY] <= k]
        stream.set_state(epoch=2, skip={0: k})
        rest = list(stream)
        assert keys(rest) == keys(full[len(consumed):])
        assert [s[POSITION_KEY] for s in rest] == [s[POSITION_KEY] for s in full[len(consumed):]]
        assert all(s[POSITION_KEY] > k for s in rest)
    raw_total = sum(SHARD_SIZES)
    assert full[-1][POSITION_KEY] <= raw_total
    if decode is dict:
        assert [s[POSITION_KEY] for s in full] == list(range(1, raw_total + 1))
    else:
        assert len(full) < raw_total  # unreadable samples are skipped, positions still count them


def test_too_few_shards_for_the_slots(shards: Path) -> None:
    two = expand_urls(str(shards / "part-00000{0,1}.tar"))
    stream = WebDatasetStream(two, dict)
    stream.set_state(0, rank=0, world_size=4)
    with pytest.raises(DataError, match="2 shards cannot feed 4 ranks x 1 workers: write more shards or lower train.num_workers"):
        next(iter(stream))
    stream.set_state(0, rank=1, world_size=2)
    with pytest.raises(DataError, match="2 shards cannot feed 2 ranks x 2 workers"):
        list(DataLoader(stream, batch_size=None, num_workers=2))
    # the failed loader's iterator sits in a reference cycle with the traceback's frames: collect
    # it now, so it shuts its other worker down in this test rather than at some later one
    gc.collect()


def test_length_only_with_samples_per_epoch_and_pickling(shards: Path) -> None:
    urls = expand_urls(str(shards))
    unsized = WebDatasetStream(urls, dict, 8, 1)
    assert isinstance(unsized, ResumableStream)
    with pytest.raises(TypeError):
        len(unsized)
    sized = WebDatasetStream(urls, dict, shuffle_buffer=8, samples_per_epoch=25)
    assert len(sized) == 25
    for s in (unsized, sized):
        copy = pickle.loads(pickle.dumps(s))  # DataLoader workers under spawn get such a copy
        assert type(copy) is type(s) and copy.urls == urls and copy.shuffle_buffer == s.shuffle_buffer
        assert keys(list(copy)) == keys(list(s))
    with pytest.raises(DataError, match="samples_per_epoch"):
        WebDatasetStream(urls, dict, samples_per_epoch=0)
    with pytest.raises(DataError, match="at least one shard"):
        WebDatasetStream([], dict)


def test_decode_errors_skip_the_sample_with_a_warning(shards: Path) -> None:
    def explode(raw: dict[str, Any]) -> dict[str, Any]:
        if raw["__key__"] == "s1_001":
            raise ValueError("bad bytes")
        return {"n": len(raw["txt"])}

    stream = WebDatasetStream(expand_urls(str(shards / "part-000001.tar")), explode)
    with pytest.warns(UserWarning, match=r"Skipping sample 's1_001' of shard .*part-000001.tar: ValueError: bad bytes"):
        got = list(stream)
    assert [s[POSITION_KEY] for s in got] == [1, 3]


def test_health_evaluator_reads_a_stream_when_there_is_no_eval_split(shards: Path) -> None:
    from ssl_core.evaluators.health import HealthEvaluator
    from ssl_core.interfaces import DataModule

    class LengthEncoder(torch.nn.Module):
        embed_dim = 4

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Linear(1, 4)

        def embed(self, batch: dict[str, Any]) -> torch.Tensor:
            return self.w(batch["n"].float()[:, None])

    stream = WebDatasetStream(expand_urls(str(shards)), _lengths)
    metrics = HealthEvaluator(max_samples=10, batch_size=4).evaluate(LengthEncoder(), DataModule(train=stream))
    assert set(metrics) >= {"embed_std", "effective_rank"}


def _lengths(raw: dict[str, Any]) -> dict[str, Any]:
    return {"n": len(raw["txt"]) + int(raw["cls"])}
