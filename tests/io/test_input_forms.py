"""Every input form end to end on the embedded simulator, asserted on the JSONL read back."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import pytest

from runner.config import load_config
from runner.core.items import InvalidLine, Item
from runner.core.payloads import BodyBuilder
from runner.errors import ConfigError
from runner.io.media import read_media
from runner.simulator import expected_content
from tests.support.configs import write_surface_config
from tests.support.records import latest, read_records, write_jsonl
from tests.support.runs import run_config

REPO = Path(__file__).resolve().parents[2]
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c49444154789c6338c1c50500027a00dd"
    "6727427d0000000049454e44ae426082"
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_plain_text_urls_still_work_and_take_the_fast_path(tmp_path: Path) -> None:
    """A text file of URLs gives one ok record per URL with the simulator's answer for it."""
    (tmp_path / "in.txt").write_text("https://e.org/a.jpg\nhttps://e.org/b.jpg\n")
    cfg = write_surface_config(tmp_path)
    await run_config(cfg)
    recs = latest(read_records(tmp_path / "out.jsonl"))
    assert recs["https://e.org/a.jpg"]["content"] == expected_content("https://e.org/a.jpg")
    assert len(recs) == 2


async def test_a_url_with_its_scheme_in_capitals_is_sent_as_given(tmp_path: Path) -> None:
    """``HTTPS://`` is an https URL (schemes are case-insensitive), as the input reader says:
    sent as written, never refused later as 'expected an http(s) URL or a local file'."""
    urls = ["HTTPS://E.ORG/A.JPG", "Http://e.org/b.jpg"]
    (tmp_path / "in.txt").write_text("".join(f"{u}\n" for u in urls))
    await run_config(write_surface_config(tmp_path))
    recs = latest(read_records(tmp_path / "out.jsonl"))
    assert {u: recs[u]["status"] for u in urls} == {u: "ok" for u in urls}, recs


async def test_jsonl_items_with_id_prompt_params_meta(tmp_path: Path) -> None:
    """JSONL: id is the key, meta is copied, a per-item prompt and params are used."""
    write_jsonl(
        tmp_path / "in.jsonl",
        [
            {
                "id": "a1",
                "url": "https://e.org/a.jpg",
                "prompt": "What is {meta.kind}?",
                "meta": {"kind": "cat", "n": 1},
                "params": {"temperature": 0},
            },
            {"url": "https://e.org/b.jpg"},
        ],
    )
    cfg = write_surface_config(tmp_path, job={"input": "in.jsonl"})
    await run_config(cfg)
    recs = latest(read_records(tmp_path / "out.jsonl"))
    assert recs["a1"]["url"] == "https://e.org/a.jpg" and recs["a1"]["meta"] == {
        "kind": "cat",
        "n": 1,
    }
    assert (
        recs["https://e.org/b.jpg"]["status"] == "ok" and "meta" not in recs["https://e.org/b.jpg"]
    )
    job = load_config(cfg, environ={}).jobs[0]
    body = BodyBuilder(job, read_media).build(
        Item(
            "a1",
            "https://e.org/a.jpg",
            1,
            prompt="What is {meta.kind}?",
            images=["https://e.org/a.jpg"],
            meta={"kind": "cat"},
            params={"temperature": 0.01, "do_sample": False},
        )
    )
    assert body["messages"][0]["content"][-1] == {"type": "text", "text": "What is cat?"}
    assert body["do_sample"] is False


async def test_several_images_key_is_first_url_plus_hash_and_limit_is_checked(
    tmp_path: Path,
) -> None:
    """Several images go in one request keyed by first URL + hash; too many is an invalid record,
    not a request."""
    urls = [f"https://e.org/{i}.jpg" for i in range(6)]
    write_jsonl(
        tmp_path / "in.jsonl", [{"images": urls[:3]}, {"images": urls}, {"images": urls[:3]}]
    )
    cfg = write_surface_config(tmp_path, job={"input": "in.jsonl"})
    await run_config(cfg)
    recs = read_records(tmp_path / "out.jsonl")
    ok = [r for r in recs if r["status"] == "ok"]
    bad = [r for r in recs if r["status"] == "error"]
    assert len(ok) == 1 and ok[0]["key"].startswith("https://e.org/0.jpg +2:")
    assert ok[0]["content"] == expected_content(urls[:3])
    assert bad[0]["error"]["code"] == "invalid_input" and "at most 5" in bad[0]["error"]["message"]
    assert bad[0]["attempts"] == 0


async def test_video_only_for_video_models_and_never_mixed(tmp_path: Path) -> None:
    """video_url is sent for glm-4v-plus, refused at plan time for glm-4v-flash, and never mixed
    with images."""
    rows = [
        {"id": "v", "video": "https://e.org/v.mp4"},
        {"id": "mix", "video": "https://e.org/v.mp4", "images": ["https://e.org/a.jpg"]},
    ]
    write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = write_surface_config(tmp_path, job={"input": "in.jsonl", "model": "glm-4v-plus"})
    await run_config(cfg)
    recs = latest(read_records(tmp_path / "out.jsonl"))
    assert recs["v"]["content"] == expected_content("https://e.org/v.mp4")
    assert "cannot be mixed" in recs["mix"]["error"]["message"]
    body = BodyBuilder(load_config(cfg, environ={}).jobs[0], read_media).build(
        Item("v", "https://e.org/v.mp4", 1, video="https://e.org/v.mp4")
    )
    assert body["messages"][0]["content"][0] == {
        "type": "video_url",
        "video_url": {"url": "https://e.org/v.mp4"},
    }
    (tmp_path / "out.jsonl").unlink()
    cfg = write_surface_config(tmp_path, job={"input": "in.jsonl", "model": "glm-4v-flash"})
    await run_config(cfg)
    assert (
        "does not take video"
        in latest(read_records(tmp_path / "out.jsonl"))["v"]["error"]["message"]
    )


async def test_a_csv_row_without_a_url_is_an_invalid_line_not_dropped(tmp_path: Path) -> None:
    """A product row whose image cell is empty gets an invalid_input record naming the column
    (it vanished from every count before); an empty row is skipped as a blank line is."""
    (tmp_path / "in.csv").write_text(
        "sku,image,title\nA1,https://e.org/a.jpg,shoe\nA2,,hat\n,,\nA3, ,cap\n"
    )
    cfg = write_surface_config(tmp_path, job={"input": "in.csv", "csv_url_column": "image"})
    result, out = await run_config(cfg)
    assert result.exit_code == 1
    recs = latest(read_records(tmp_path / "out.jsonl"))
    assert {k: r["status"] for k, r in recs.items()} == {
        "https://e.org/a.jpg": "ok",
        "A2,,hat": "error",
        "A3, ,cap": "error",
    }
    assert recs["A2,,hat"]["error"]["message"] == "line 3: no URL in column 'image'"
    assert out.splitlines()[0] == "t: ok 1, errors 2 (2 invalid lines) — 3/3 done"


async def test_csv_rows_keyed_by_an_id_column_are_items_of_their_own(tmp_path: Path) -> None:
    """Two products with one photo: keyed by URL the second row was a duplicate line, never
    asked about (its title differed) and never joined back to its SKU. With csv_id_column
    each row is an item of its own and its record carries the key; a row without an id is
    an invalid line naming the column; a rerun sends nothing again."""
    (tmp_path / "in.csv").write_text(
        "sku,image,title\n"
        "A1,https://e.org/a.jpg,Red shoe\n"
        "A2,https://e.org/a.jpg,Red shoe with laces\n"
        ",https://e.org/b.jpg,No sku\n"
    )
    job = {"input": "in.csv", "csv_url_column": "image", "csv_id_column": "sku"}
    cfg = write_surface_config(tmp_path, job={**job, "prompt": "Is this a {title}?"})
    result, out = await run_config(cfg)
    recs = latest(read_records(tmp_path / "out.jsonl"))
    assert {k: (r["status"], r["url"]) for k, r in recs.items() if r["status"] == "ok"} == {
        "A1": ("ok", "https://e.org/a.jpg"),
        "A2": ("ok", "https://e.org/a.jpg"),
    }
    assert all(recs[k]["key"] == k for k in ("A1", "A2"))
    (bad,) = [r for r in recs.values() if r["status"] == "error"]
    assert bad["error"]["message"] == "line 4: no id in column 'sku'"
    assert out.splitlines()[0].startswith("t: ok 2, errors 1 (1 invalid line)")
    again, out = await run_config(cfg)
    assert out.splitlines()[0].startswith("t: nothing to do"), out


def test_a_csv_without_its_id_column_is_a_config_error(tmp_path: Path) -> None:
    """csv_id_column naming a column the header lacks stops before anything is sent."""
    (tmp_path / "in.csv").write_text("image,title\nhttps://e.org/a.jpg,shoe\n")
    job = {"input": "in.csv", "csv_url_column": "image", "csv_id_column": "sku"}
    config = load_config(write_surface_config(tmp_path, job=job), environ={})
    from runner.io.prepare import read_job_items

    with pytest.raises(ConfigError, match=r"no column 'sku' in the CSV header \(image, title\)"):
        list(read_job_items(config.jobs[0], config))


async def test_csv_with_a_named_url_column_and_column_fields(tmp_path: Path) -> None:
    """CSV: the named column is the URL, other columns fill {field}s in the prompt."""
    (tmp_path / "in.csv").write_text(
        'sku,image,title\n1,https://e.org/a.jpg,Red shoe\n2,https://e.org/b.jpg,"Blue, hat"\n'
    )
    cfg = write_surface_config(
        tmp_path,
        job={
            "input": "in.csv",
            "csv_url_column": "image",
            "prompt": "Is this a {title}? sku {sku}",
        },
    )
    await run_config(cfg)
    recs = latest(read_records(tmp_path / "out.jsonl"))
    assert set(recs) == {"https://e.org/a.jpg", "https://e.org/b.jpg"}
    body = BodyBuilder(load_config(cfg, environ={}).jobs[0], read_media).build(
        Item(
            "https://e.org/b.jpg",
            "https://e.org/b.jpg",
            3,
            fields={"sku": "2", "title": "Blue, hat", "image": "x"},
        )
    )
    assert body["messages"][0]["content"][-1]["text"] == "Is this a Blue, hat? sku 2"


@pytest.mark.parametrize("sep", [";", "\t"], ids=["semicolon", "tab"])
async def test_a_semicolon_or_tab_separated_csv_is_read_by_its_header(
    tmp_path: Path, sep: str
) -> None:
    """Excel where the decimal mark is a comma saves CSV with ``;``: its header tells the
    delimiter, so the URL column is found (it was "no column 'image' in the CSV header
    (sku;image;title); set csv_url_column", naming a column that is there) and quoted cells
    keep their separators and newlines."""
    rows = [["sku", "image", "title"], ["1", "https://e.org/a.jpg", '"Red; ""big""\nshoe"']]
    (tmp_path / "in.csv").write_text("\ufeff" + "\r\n".join(sep.join(r) for r in rows) + "\r\n")
    cfg = write_surface_config(
        tmp_path, job={"input": "in.csv", "csv_url_column": "image", "prompt": "Is it {title}?"}
    )
    from runner.io.prepare import read_job_items

    config = load_config(cfg, environ={})
    (item,) = list(read_job_items(config.jobs[0], config))
    assert isinstance(item, Item) and item.url == "https://e.org/a.jpg"
    assert item.fields == {"sku": "1", "image": "https://e.org/a.jpg", "title": 'Red; "big"\nshoe'}
    await run_config(cfg)
    assert latest(read_records(tmp_path / "out.jsonl"))["https://e.org/a.jpg"]["status"] == "ok"


def test_csv_without_the_column_is_a_config_error(tmp_path: Path) -> None:
    """A CSV whose header lacks csv_url_column stops with a message naming the column."""
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    cfg = write_surface_config(tmp_path, job={"input": "in.csv"})
    from runner.io.prepare import read_job_items

    config = load_config(cfg, environ={})
    with pytest.raises(ConfigError, match=r"no column 'url' .*\(a, b\); set csv_url_column$"):
        list(read_job_items(config.jobs[0], config))


@pytest.mark.parametrize(
    ("rows", "fix"),
    [
        (
            "sku,image\n1,https://e.org/a.jpg\n",
            "set csv_url_column: image (its first row holds a URL)",
        ),
        ("a,b\nhttps://e.org/a.jpg,https://e.org/b.jpg\n", "set csv_url_column"),  # which?
        ("sku,image\n", "set csv_url_column"),  # no row to tell by
    ],
    ids=["one-url-column", "two", "header-only"],
)
def test_csv_without_the_column_names_the_column_that_holds_urls(
    tmp_path: Path, rows: str, fix: str
) -> None:
    """A CSV with its URLs in 'image' and no csv_url_column (the usual first try) is told
    which column to name; when no single column holds a URL, just to set it."""
    from runner.io.inputs import check_input

    (tmp_path / "in.csv").write_text(rows)
    with pytest.raises(ConfigError) as caught:
        check_input(tmp_path / "in.csv", "shop", csv_url_column="url")
    assert str(caught.value).startswith("job shop: ") and str(caught.value).endswith(f"); {fix}")


async def test_input_format_key_overrides_the_extension(tmp_path: Path) -> None:
    """input_format: jsonl reads a .txt file as JSONL."""
    write_jsonl(tmp_path / "in.txt", [{"id": "x", "url": "https://e.org/a.jpg"}])
    cfg = write_surface_config(tmp_path, job={"input_format": "jsonl"})
    await run_config(cfg)
    assert latest(read_records(tmp_path / "out.jsonl"))["x"]["status"] == "ok"


async def test_bad_jsonl_lines_become_invalid_records(tmp_path: Path) -> None:
    """Broken JSON, unknown fields and missing media are invalid_input records; the run goes on."""
    (tmp_path / "in.jsonl").write_text(
        '{"url": "https://e.org/a.jpg"}\n{not json\n{"id": "u", "urll": "x"}\n{"id": "e"}\n'
    )
    cfg = write_surface_config(tmp_path, job={"input": "in.jsonl"})
    await run_config(cfg)
    recs = read_records(tmp_path / "out.jsonl")
    errors = {r.get("key", r["url"]): r["error"]["message"] for r in recs if r["status"] == "error"}
    assert len(errors) == 3 and "no url" in errors["e"]
    assert errors["u"].startswith("line 3: unknown field(s) urll (did you mean url?); expected ")


def test_a_jsonl_url_with_spaces_around_it_is_named_as_such(tmp_path: Path) -> None:
    """' https://…' in a JSONL item read as a local path (JSONL takes relative paths), refused
    as one ('does not accept base64 image data' with glm-4v-flash); now its reason is the
    spaces. A real path with a space is still a path."""
    from runner.io.inputs import read_items

    rows = [
        {"id": "u", "url": " https://e.org/a.jpg"},
        {"id": "i", "images": ["https://e.org/a.jpg", "HTTPS://e.org/b.jpg\t"]},
        {"id": "v", "video": "https://e.org/c.mp4 "},
        {"id": "p", "url": " pics/a.png"},
    ]
    write_jsonl(tmp_path / "in.jsonl", rows)
    got = {
        i.key if isinstance(i, Item) else i.line_no: i for i in read_items(tmp_path / "in.jsonl")
    }
    for line_no, shown in (
        (1, "' https://e.org/a.jpg'"),
        (2, "'HTTPS://e.org/b.jpg\\t'"),
        (3, "c.mp4 '"),
    ):
        assert isinstance(got[line_no], InvalidLine), got
        assert shown in got[line_no].reason and "a URL with spaces around it; remove them" in (
            got[line_no].reason
        )
    assert isinstance(got["p"], Item)


async def test_local_files_as_base64_only_under_allowed_dirs(tmp_path: Path) -> None:
    """Allowed local images go as raw base64; /etc/passwd, missing, outside and oversized files are
    refused."""
    pics = tmp_path / "pics"
    pics.mkdir()
    (pics / "a.png").write_bytes(PNG)
    (pics / "big.png").write_bytes(b"\x89PNG" + b"0" * (5 * 1024 * 1024 + 1))
    (pics / "notes.txt").write_text("x")
    (tmp_path / "secret.png").write_bytes(PNG)
    (pics / "link.png").symlink_to(tmp_path / "secret.png")
    lines = [
        f"file://{pics}/a.png",
        "/etc/passwd",
        f"{pics}/missing.png",
        str(tmp_path / "secret.png"),
        f"{pics}/big.png",
        f"{pics}/notes.txt",
        "./pics/../secret.png",
        f"{pics}/link.png",
        "./pics/a.png",
    ]
    cfg = write_surface_config(tmp_path, lines, local_files={"allowed_dirs": ["pics"]})
    await run_config(cfg)
    recs = latest(read_records(tmp_path / "out.jsonl"))
    assert recs[f"file://{pics}/a.png"]["content"] == expected_content(b64(PNG))
    assert recs["./pics/a.png"]["status"] == "ok"
    msgs = {k: r["error"]["message"] for k, r in recs.items() if r["status"] == "error"}
    assert "not under local_files.allowed_dirs" in msgs["/etc/passwd"]
    assert "no such file" in msgs[f"{pics}/missing.png"]
    assert (
        "not under" in msgs[str(tmp_path / "secret.png")]
        and "not under" in msgs["./pics/../secret.png"]
    )
    assert "not under" in msgs[f"{pics}/link.png"]
    assert (
        "at most 5 MB" in msgs[f"{pics}/big.png"]
        and "jpg, jpeg or png" in msgs[f"{pics}/notes.txt"]
    )


async def test_local_files_refused_when_no_folder_is_allowed(tmp_path: Path) -> None:
    """Without local_files.allowed_dirs every local path is an error record naming the key to
    set."""
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "in.txt").write_text(f"{tmp_path}/a.png\n")
    await run_config(write_surface_config(tmp_path))
    (rec,) = read_records(tmp_path / "out.jsonl")
    assert rec["status"] == "error" and "local_files.allowed_dirs" in rec["error"]["message"]


async def test_base64_refused_for_glm_4v_flash_at_plan_time(tmp_path: Path) -> None:
    """glm-4v-flash takes no base64: a local file is a plan-time error naming the model and the
    alternative."""
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "in.txt").write_text("./a.png\n")
    cfg = write_surface_config(
        tmp_path, job={"model": "glm-4v-flash"}, local_files={"allowed_dirs": ["."]}
    )
    result, _ = await run_config(cfg)
    (rec,) = read_records(tmp_path / "out.jsonl")
    msg = rec["error"]["message"]
    assert "glm-4v-flash does not accept base64" in msg and "glm-4v-plus-0111" in msg
    assert result.stats[0].requests == 0


async def test_batch_style_jsonl_sent_as_given_with_file_images_as_base64(tmp_path: Path) -> None:
    """{messages, image: file://...}: the messages are sent as given, the file as base64, image is
    the key."""
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "1.png").write_bytes(PNG)
    img = f"file://{tmp_path}/img/1.png"
    rows = [
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": img}},
                        {"type": "text", "text": "Describe"},
                    ],
                }
            ],
            "image": img,
        },
        {
            "messages": [{"role": "user", "content": "What is this?"}],
            "image": "https://e.org/z.jpg",
        },
    ]
    write_jsonl(tmp_path / "in.jsonl", rows)
    cfg = write_surface_config(
        tmp_path,
        job={"input": "in.jsonl", "model": "glm-4.5v", "prompt": ""},
        local_files={"allowed_dirs": ["img"]},
    )
    await run_config(cfg)
    recs = latest(read_records(tmp_path / "out.jsonl"))
    assert recs[img]["content"] == expected_content(b64(PNG))
    assert recs["https://e.org/z.jpg"]["content"] == expected_content("https://e.org/z.jpg")


@pytest.mark.parametrize("name", ["multi-image", "batch-style"], ids=["multi-image", "batch-style"])
async def test_shipped_example_configs_run_end_to_end(tmp_path: Path, name: str) -> None:
    """config/multi-image.yaml and config/batch-style.yaml run on the simulator with every item
    ok."""
    shutil.copytree(REPO / "config", tmp_path / "config")
    result, _ = await run_config(tmp_path / "config" / f"{name}.yaml")
    recs = read_records(tmp_path / "out" / f"{name}.jsonl")
    assert len(recs) == 3 and all(r["status"] == "ok" for r in recs), recs
    assert result.exit_code == 0


def test_multi_image_turns_carry_the_local_image_as_base64() -> None:
    """The multi-image example: system, an earlier turn with a local image, then the item's images
    and prompt."""
    job = load_config(REPO / "config" / "multi-image.yaml", environ={}).jobs[0]
    body = BodyBuilder(job, read_media).build(
        Item(
            "pair-1",
            "https://e.org/x.jpg",
            1,
            id="pair-1",
            images=["https://e.org/x.jpg"],
            meta={"topic": "t"},
        )
    )
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    red = (REPO / "config" / "images" / "red.png").read_bytes()
    assert body["messages"][1]["content"][0]["image_url"]["url"] == b64(red)
    assert (
        body["messages"][3]["content"][-1]["text"]
        == "Item pair-1 (t): how do these pictures differ from the red one?"
    )


def test_turn_images_outside_allowed_dirs_fail_at_config_load(tmp_path: Path) -> None:
    """A local image in the job's messages outside local_files.allowed_dirs is a ConfigError."""
    (tmp_path / "a.png").write_bytes(PNG)
    turns = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "a.png"}},
                {"type": "text", "text": "x"},
            ],
        },
        {"role": "assistant", "content": "y"},
    ]
    cfg = write_surface_config(tmp_path, job={"messages": turns})
    with pytest.raises(ConfigError, match="local_files.allowed_dirs"):
        load_config(cfg, environ={})


def test_system_message_refused_for_models_without_one(tmp_path: Path) -> None:
    """system: on glm-4v (no system role) is a ConfigError at load."""
    cfg = write_surface_config(tmp_path, job={"model": "glm-4v", "system": "Be brief."})
    with pytest.raises(ConfigError, match="takes no system message"):
        load_config(cfg, environ={})


def test_braces_that_are_not_fields_are_left_alone(tmp_path: Path) -> None:
    """A JSON example in the prompt is not mangled by {field} substitution."""
    cfg = write_surface_config(tmp_path, job={"prompt": 'Answer as {"objects": [...]} for {url}'})
    job = load_config(cfg, environ={}).jobs[0]
    body = BodyBuilder(job, read_media).build(Item("https://e.org/a.jpg", "https://e.org/a.jpg", 1))
    assert (
        body["messages"][0]["content"][-1]["text"]
        == 'Answer as {"objects": [...]} for https://e.org/a.jpg'
    )


def test_fast_path_bytes_equal_the_dict_path(tmp_path: Path) -> None:
    """For a plain URL item the template splice and the dict path give the same JSON."""
    import orjson

    job = load_config(
        write_surface_config(tmp_path, job={"params": {"temperature": 0.3}}), environ={}
    ).jobs[0]
    builder = BodyBuilder(job, read_media)
    item = Item("https://e.org/a.jpg", "https://e.org/a.jpg", 1)
    assert orjson.loads(builder.render(item, "rid")) == builder.build(item, "rid")


def test_unknown_params_are_warned_about_at_load_and_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An unknown job param is logged as a warning naming it and still sent; a bad known one is a
    ConfigError."""
    cfg = write_surface_config(
        tmp_path, job={"params": {"frequency_penalty": 0.2, "temperature": 0}}
    )
    with caplog.at_level("WARNING"):
        job = load_config(cfg, environ={}).jobs[0]
    assert "params.frequency_penalty" in caplog.text
    assert job.params == {"frequency_penalty": 0.2, "temperature": 0.01, "do_sample": False}
    with pytest.raises(ConfigError, match=r"jobs\[0\].params.top_p: .*two decimals"):
        load_config(write_surface_config(tmp_path, job={"params": {"top_p": 0.555}}), environ={})


async def test_item_params_are_checked_per_item(tmp_path: Path) -> None:
    """A JSONL item's params are merged over the job's and validated; a bad one is an invalid
    record."""
    write_jsonl(
        tmp_path / "in.jsonl",
        [
            {"id": "good", "url": "https://e.org/a.jpg", "params": {"max_tokens": 100}},
            {"id": "bad", "url": "https://e.org/b.jpg", "params": {"request_id": "mine"}},
            {
                "id": "think",
                "url": "https://e.org/c.jpg",
                "params": {"thinking": {"type": "enabled"}},
            },
        ],
    )
    await run_config(write_surface_config(tmp_path, job={"input": "in.jsonl"}))
    recs = latest(read_records(tmp_path / "out.jsonl"))
    assert recs["good"]["status"] == "ok"
    assert "params.request_id" in recs["bad"]["error"]["message"]
    assert "no thinking mode" in recs["think"]["error"]["message"]


def test_turn_images_that_leave_no_room_for_the_item_fail_at_load(tmp_path: Path) -> None:
    """glm-4v-flash takes one image: a turn image plus the item's image is a ConfigError, not N
    invalid records."""
    turns = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://e.org/t.jpg"}},
                {"type": "text", "text": "x"},
            ],
        },
        {"role": "assistant", "content": "y"},
    ]
    with pytest.raises(ConfigError, match="no room for the item's own image"):
        load_config(
            write_surface_config(tmp_path, job={"model": "glm-4v-flash", "messages": turns}),
            environ={},
        )


async def test_plain_urls_are_counted_with_turn_images(tmp_path: Path) -> None:
    """Plain URL lines are checked against the limit together with the turns' images (5 for
    glm-4v-plus-0111)."""
    turns = [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"https://e.org/t{i}.jpg"}}
                for i in range(4)
            ]
            + [{"type": "text", "text": "x"}],
        },
        {"role": "assistant", "content": "y"},
    ]
    (tmp_path / "in.txt").write_text("https://e.org/a.jpg\n")
    await run_config(write_surface_config(tmp_path, job={"messages": turns}))
    (rec,) = read_records(tmp_path / "out.jsonl")
    assert rec["status"] == "ok" and rec["content"] == expected_content(
        [f"https://e.org/t{i}.jpg" for i in range(4)] + ["https://e.org/a.jpg"]
    )


def _mp4(seconds: int) -> bytes:
    """A minimal mp4 skeleton: ftyp + moov/mvhd (version 0) with the given duration."""
    import struct

    mvhd_body = bytes(4) + struct.pack(">IIII", 0, 0, 1000, seconds * 1000) + bytes(80)
    mvhd = struct.pack(">I4s", 8 + len(mvhd_body), b"mvhd") + mvhd_body
    moov = struct.pack(">I4s", 8 + len(mvhd), b"moov") + mvhd
    ftyp = struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 0)
    return ftyp + moov


async def test_local_video_checked_for_length_on_glm_4v_plus(tmp_path: Path) -> None:
    """glm-4v-plus takes local mp4 up to 30 s: a 12 s clip is sent (as base64), a 45 s one is
    refused at plan time."""
    from runner.io.prepare import mp4_duration_s

    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "short.mp4").write_bytes(_mp4(12))
    (tmp_path / "v" / "long.mp4").write_bytes(_mp4(45))
    assert mp4_duration_s(tmp_path / "v" / "short.mp4") == 12.0
    write_jsonl(
        tmp_path / "in.jsonl",
        [{"id": "short", "video": "./v/short.mp4"}, {"id": "long", "video": "./v/long.mp4"}],
    )
    await run_config(
        write_surface_config(
            tmp_path,
            job={"input": "in.jsonl", "model": "glm-4v-plus"},
            local_files={"allowed_dirs": ["v"]},
        )
    )
    recs = latest(read_records(tmp_path / "out.jsonl"))
    assert recs["short"]["content"] == expected_content(b64(_mp4(12)))
    assert (
        "45.0 s long" in recs["long"]["error"]["message"]
        and "at most 30 s" in recs["long"]["error"]["message"]
    )


def test_image_size_reads_png_and_jpeg_headers(tmp_path: Path) -> None:
    """Pixel sizes come from the PNG IHDR and the JPEG SOF marker; the shipped examples are
    small."""
    import struct
    import zlib

    from runner.io.prepare import image_size

    assert image_size(REPO / "config" / "images" / "red.png") == (8, 8)
    assert image_size(REPO / "config" / "images" / "grey.jpg") == (1, 1)
    ihdr = struct.pack(">IIBBBBB", 7000, 10, 8, 2, 0, 0, 0)
    big = (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )
    (tmp_path / "wide.png").write_bytes(big)
    assert image_size(tmp_path / "wide.png") == (7000, 10)


async def test_images_over_6000_px_are_refused(tmp_path: Path) -> None:
    """A local image wider than 6000 px is an invalid record, not a request."""
    import struct

    ihdr = struct.pack(">IIBBBBB", 6001, 10, 8, 2, 0, 0, 0)
    (tmp_path / "wide.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + bytes(4)
    )
    (tmp_path / "in.txt").write_text("./wide.png\n")
    await run_config(write_surface_config(tmp_path, local_files={"allowed_dirs": ["."]}))
    (rec,) = read_records(tmp_path / "out.jsonl")
    assert "6001x10 px" in rec["error"]["message"]
