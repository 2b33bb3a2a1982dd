"""Pure naming rules: stored output names, which inputs are media to upload, and asset URIs of stored outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_wavespeed.assets import asset_uri
from airflow_provider_wavespeed.media import comparable_inputs, is_media_reference
from airflow_provider_wavespeed.output_downloads import output_name

# -- output_downloads.output_name -------------------------------------------------------------------------


def test_a_single_output_is_named_after_the_prediction_with_the_urls_extension():
    assert output_name("p1", 0, 1, "https://cdn.example.com/a/b/video.mp4") == "p1.mp4"


def test_several_outputs_get_their_index_so_names_never_collide():
    names = [output_name("p1", i, 3, f"https://cdn.example.com/{i}.png") for i in range(3)]
    assert names == ["p1_0.png", "p1_1.png", "p1_2.png"]


def test_the_name_is_the_same_on_every_retry_so_a_stored_output_is_found_again():
    url = "https://cdn.example.com/out.png?X-Amz-Signature=abc"
    assert output_name("p1", 1, 2, url) == output_name("p1", 1, 2, url.replace("abc", "def")) == "p1_1.png"


def test_the_query_string_and_fragment_do_not_leak_into_the_extension():
    assert output_name("p1", 0, 1, "https://cdn.example.com/out.webp?token=x.y#frag") == "p1.webp"


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/output",
        "https://cdn.example.com/output.verylongext",
        "https://cdn.example.com/output.p-g",
        "https://cdn.example.com/archive.tar.",
    ],
)
def test_a_missing_or_implausible_extension_is_left_out(url):
    assert output_name("p1", 0, 1, url) == "p1"


def test_a_given_stem_replaces_the_prediction_id_and_unsafe_characters_become_underscores():
    assert output_name("p1", 0, 1, "https://x/o.png", stem="my portrait") == "my_portrait.png"
    assert output_name("p1", 0, 1, "https://x/o.png", stem="../../etc/passwd") == "etc_passwd.png"
    assert output_name("p1", 2, 3, "https://x/o.png", stem="take:2") == "take_2_2.png"


@pytest.mark.parametrize("stem", ["...", "//", "*?"])
def test_a_stem_without_usable_characters_is_refused(stem):
    with pytest.raises(ValueError, match="has no usable characters"):
        output_name("p1", 0, 1, "https://x/o.png", stem=stem)


def test_a_base64_output_takes_the_extension_passed_as_a_dummy_url():
    assert output_name("p1", 0, 1, "x" + ".jpg") == "p1.jpg"


# -- media.is_media_reference -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "https://example.com/portrait.png",
        "http://127.0.0.1:8000/voice.mp3",
        "data:image/png;base64,iVBORw0KGgo=",
    ],
)
def test_urls_the_api_can_fetch_pass_through_without_upload(value):
    assert not is_media_reference(value, "image")


@pytest.mark.parametrize(
    "value",
    [
        "s3://bucket/key.png",
        "s3://aws_conn@bucket/key.png",
        "gs://bucket/voice.mp3",
        "file:///tmp/a.png",
        "git+ssh://h/x",
    ],
)
def test_object_storage_and_file_uris_are_uploaded(value):
    assert is_media_reference(value)
    assert is_media_reference(f"  {value}  ", "prompt")


def test_an_existing_local_file_is_uploaded_whatever_the_field(tmp_path):
    photo = tmp_path / "face.png"
    photo.write_bytes(b"\x89PNG")
    assert is_media_reference(str(photo), "prompt")


@pytest.mark.parametrize("field", ["image", "audio_url", "Video", "mask_image", "input_media", "reference_file"])
def test_a_missing_local_path_in_a_media_field_counts_so_the_upload_fails_before_any_billing(tmp_path, field):
    assert is_media_reference(str(tmp_path / "missing.png"), field)
    assert is_media_reference("./missing.png", field)


def test_a_missing_local_path_in_another_field_is_plain_text(tmp_path):
    assert not is_media_reference(str(tmp_path / "missing.png"), "prompt")
    assert not is_media_reference("../notes", "negative_prompt")


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        ["s3://bucket/key.png"],
        "",
        "   ",
        "a cat on a red sofa, 35mm",
        "portrait.png",
        "s3://bucket/a.png\ns3://bucket/b.png",
        "see: https://example.com",
        "weird scheme!://x",
    ],
)
def test_other_values_are_never_media(value):
    assert not is_media_reference(value, "image")


# -- media.comparable_inputs ------------------------------------------------------------------------------


def test_uploaded_fields_are_left_out_of_the_comparison_with_history_and_every_other_field_is_kept(tmp_path):
    photo = tmp_path / "face.png"
    photo.write_bytes(b"\x89PNG")
    inputs = {
        "image": str(photo),
        "audio": "file:///data/voice.mp3",
        "mask": str(tmp_path / "missing.png"),  # a media field: uploaded (and failing) before any submit
        "images": ["https://example.com/a.png", "s3://conn@bucket/b.png"],  # a list holding one is left out too
        "reference": "https://example.com/ref.png",  # sent as given: the history shows it as is
        "styles": ["https://example.com/s.png", "bold"],
        "prompt": "a cat on a red sofa",
        "notes": "../notes",  # a missing path outside a media field is plain text
        "seed": 7,
        "options": {"image": "s3://bucket/key.png"},  # only top-level values and lists are uploaded
    }
    assert comparable_inputs(inputs) == {
        "reference": "https://example.com/ref.png",
        "styles": ["https://example.com/s.png", "bold"],
        "prompt": "a cat on a red sofa",
        "notes": "../notes",
        "seed": 7,
        "options": {"image": "s3://bucket/key.png"},
    }


def test_inputs_without_media_references_are_compared_whole():
    inputs = {"prompt": "hello", "image": "https://example.com/p.png", "sizes": [1, 2], "seed": None}
    assert comparable_inputs(inputs) == inputs


# -- assets.asset_uri ---------------------------------------------------------------------------------------


def test_a_local_path_becomes_an_absolute_file_uri(tmp_path):
    stored = tmp_path / "out" / "p1.png"
    assert asset_uri(str(stored)) == stored.resolve().as_uri()
    assert asset_uri(str(stored)).startswith("file:///")


def test_a_relative_local_path_is_resolved_against_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert asset_uri("out/p1.png") == (Path(tmp_path) / "out" / "p1.png").resolve().as_uri()


def test_an_object_storage_uri_loses_its_connection_so_one_object_is_one_asset():
    with_conn = asset_uri("s3://aws_prod@media-bucket/renders/p1_0.png")
    assert with_conn == "s3://media-bucket/renders/p1_0.png"
    assert asset_uri("s3://aws_other@media-bucket/renders/p1_0.png") == with_conn


def test_an_object_storage_uri_without_a_connection_is_unchanged():
    assert asset_uri("gs://media-bucket/renders/p1.mp4") == "gs://media-bucket/renders/p1.mp4"
    assert asset_uri("file:///data/out/p1.png") == "file:///data/out/p1.png"
