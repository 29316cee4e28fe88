"""kp_tf.data.sources: the checks that let `train --src=DIR` convert on first use. A missing or
mislaid source is named with what was expected and what was found, and a conversion already
in the data folder is reused, never overwritten by another one."""

import os

import pytest

from kp_tf import cli
from kp_tf.data import datasets, sources, tfrecords
from kp_tf import config, stages

from test_readers import make_penn, random_frames, write_gif


def gif_copy(root, splits=("train", "test")):
    """root/{train,test}/a.gif: the mgif layout, 16×16 clips of 3 frames."""
    for split in splits:
        (root / split).mkdir(parents=True)
        write_gif(root / split / "a.gif", random_frames(t=3, h=16, w=16))
    return root


def error_of(spec_name, src, **kwargs) -> sources.SourceError:
    with pytest.raises(sources.SourceError) as err:
        sources.check_source(datasets.get_spec(spec_name), src, **kwargs)
    return err.value


# --- check_source: expected and found -----------------------------------------------------------

def test_a_source_in_the_layout_passes(tmp_path):
    sources.check_source(datasets.get_spec("mgif"), gif_copy(tmp_path / "mgif"))
    make_penn(tmp_path / "penn")
    sources.check_source(datasets.get_spec("penn"), tmp_path / "penn")
    sources.check_source(datasets.get_spec("synthetic"), None)  # nothing to read


def test_a_missing_source_or_a_file_says_so_with_the_help(tmp_path):
    err = error_of("mgif", tmp_path / "nowhere")
    assert str(err) == f"--src {tmp_path / 'nowhere'} for --dataset=mgif: it does not exist"
    assert err.details == tuple(sources.help_lines("mgif"))
    (tmp_path / "f.zip").write_bytes(b"PK")
    assert "it is a file, not a folder" in str(error_of("mgif", tmp_path / "f.zip"))


def test_a_flat_folder_of_videos_names_the_split_folders_it_lacks(tmp_path):
    for i in range(3):
        (tmp_path / f"{i:03d}_spontaneous_smile.mp4").write_bytes(b"x")
    (tmp_path / "readme.txt").write_text("x")
    err = error_of("nemo", tmp_path)
    assert str(err) == (
        f"--src {tmp_path} is not laid out as --dataset=nemo is read: expected train/ and test/ "
        f"folders of clips (.gif, .mp4, .avi, .mov, .png, .jpg, .jpeg, .bmp files or frame "
        f"folders); found no train/ or test/ in it; it holds 4 files (3 .mp4, 1 .txt)")
    assert err.suggested_src is None
    assert any(line.startswith("Get it: https://www.uva-nemo.org") for line in err.details)


def test_a_split_folder_without_clips_names_what_it_holds(tmp_path):
    gif_copy(tmp_path, splits=("train",))
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "a.mp4").write_bytes(b"x")
    assert str(error_of("mgif", tmp_path)).endswith(
        "found test/ holds no clip: 1 file (1 .mp4)")


def test_the_folder_above_the_download_points_to_it(tmp_path):
    gif_copy(tmp_path / "moving-gif")
    (tmp_path / "moving-gif.zip").write_bytes(b"PK")
    err = error_of("mgif", tmp_path)
    assert err.suggested_src == str(tmp_path / "moving-gif")
    assert str(err).endswith(f"it holds 1 folder (moving-gif/), 1 file (1 .zip); "
                             f"{tmp_path / 'moving-gif'} inside it has that layout")


def test_penn_without_the_split_files_or_with_a_bad_line(tmp_path):
    make_penn(tmp_path)
    (tmp_path / "train_set.txt").unlink()
    (tmp_path / "test_set.txt").unlink()
    assert str(error_of("penn", tmp_path)).endswith(
        "expected frames/, labels/, train_set.txt, test_set.txt; found no train_set.txt, "
        "test_set.txt; it holds 2 folders (frames/, labels/)")
    (tmp_path / "train_set.txt").write_text("frames/0001 12\n")
    (tmp_path / "test_set.txt").write_text("frames/0002 1\n")
    assert "train_set.txt:1: class index 12 outside 0..8" in str(error_of("penn", tmp_path))


def test_describe_folder_counts_folders_and_file_kinds(tmp_path):
    assert sources.describe_folder(tmp_path) == "nothing (an empty folder)"
    for name in ("b", "a10", "a2", "c", "d", ".hidden"):
        (tmp_path / name).mkdir()
    for name in ("x.GIF", "y.gif", "z", ".DS_Store"):
        (tmp_path / name).write_bytes(b"")
    assert sources.describe_folder(tmp_path) == (
        "5 folders (a2/, a10/, b/, c/, ...), 3 files (2 .gif, 1 without extension)")


# --- existing_conversion: reuse, refuse, or convert ---------------------------------------------

def test_no_conversion_and_no_source_explains_where_to_get_the_dataset(tmp_path):
    data_dir = str(tmp_path / "data" / "penn")
    with pytest.raises(sources.SourceError) as err:
        sources.existing_conversion("penn", data_dir, "", 128)
    assert str(err.value) == (f"no data for --dataset=penn: {data_dir} holds no conversion "
                              f"(no manifest.json) and no --src was given")
    details = "\n".join(err.value.details)
    assert "http://dreamdragon.github.io/PennAction/" in details
    assert "labels/0001.mat" in details and "train_set.txt, test_set.txt" in details
    assert not os.path.exists(data_dir)  # nothing written


def test_a_conversion_is_reused_and_another_source_or_size_refused(tmp_path):
    src, data_dir = gif_copy(tmp_path / "mgif"), str(tmp_path / "data")
    assert sources.existing_conversion("mgif", data_dir, str(src), 16) is None  # to convert
    made = datasets.convert("mgif", str(src), data_dir, resolution=16, log=None)
    for given in ("", str(src), str(src) + "/", os.path.relpath(src)):
        assert sources.existing_conversion("mgif", data_dir, given, 16) == made
    other = gif_copy(tmp_path / "other")
    with pytest.raises(sources.SourceError) as err:
        sources.existing_conversion("mgif", data_dir, str(other), 16)
    assert str(err.value) == (
        f"{data_dir} was converted from {src}, not from --src {other}: leave out --src to train "
        f"on that conversion, or give --data_dir=ANOTHER_FOLDER to convert {other} beside it")
    assert err.value.details == ()
    for dataset, size in (("mgif", 32), ("nemo", 16)):
        with pytest.raises(sources.SourceError, match=f"holds mgif at 16 px .*not {dataset} at "
                                                      f"{size} px"):
            sources.existing_conversion(dataset, data_dir, str(src), size)
    assert tfrecords.load_manifest(data_dir) == made


def test_prepare_data_converts_from_src_once(tmp_path, capsys):
    src = gif_copy(tmp_path / "mgif")
    cfg = config.load_preset("mgif", image_size=16, src=str(src),
                             data_dir=str(tmp_path / "data"), logdir=str(tmp_path / "run"))
    stages.run(cfg, "data")
    assert f"Converting mgif from {src}" in capsys.readouterr().out
    made = tfrecords.load_manifest(cfg.resolved_data_dir)
    assert made["splits"]["train"]["clips"] == 1 and made["resolution"] == 16
    shard = os.path.join(cfg.resolved_data_dir, made["splits"]["train"]["shards"][0]["file"])
    stamp = os.stat(shard).st_mtime_ns
    for again in (cfg, cfg.replace(src="")):  # a second run reuses it, with or without --src
        stages.run(again, "data")
        assert "Converting" not in capsys.readouterr().out
    assert tfrecords.load_manifest(cfg.resolved_data_dir) == made
    assert os.stat(shard).st_mtime_ns == stamp


def test_unknown_dataset_is_a_source_error():
    with pytest.raises(sources.SourceError, match="unknown dataset 'moving'"):
        sources.existing_conversion("moving", "data/moving", "", 128)


# --- what the command prints -----------------------------------------------------------------

@pytest.mark.parametrize("argv, src, want", [
    (["x/kp_tf/train.py", "--dataset=mgif"], "DIR", "python -m kp_tf.train --dataset=mgif --src=DIR"),
    (["/venv/bin/kp-train", "--dataset=penn", "--src", "old", "--stage=data"], "/a b",
     "kp-train --dataset=penn --stage=data '--src=/a b'"),
    (["train.py", "--src=old", "--dataset=nemo", "--batch_size=8", "-src=x"], "new",
     "python -m kp_tf.train --dataset=nemo --batch_size=8 --src=new"),
])
def test_the_command_to_run_next_is_the_users_with_the_src(argv, src, want):
    assert cli.command_with("src", src, module="kp_tf.train", script="kp-train",
                            argv=argv) == want
