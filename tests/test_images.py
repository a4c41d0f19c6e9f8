"""The one image-suffix list and folder listing every module uses: what is listed, what is left out, the errors."""
import pytest
from PIL import Image

from reidlab.images import IMAGE_SUFFIXES, NoImagesError, check_image, folder_images, list_images


def draw(path, fmt):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 8), (10, 40, 80)).save(path, format=fmt)


def test_lists_each_suffix_in_any_case_sorted(tmp_path):
    draw(tmp_path / "b.JPG", "JPEG")
    draw(tmp_path / "a.webp", "WEBP")
    draw(tmp_path / "c.png", "PNG")
    draw(tmp_path / "sub" / "d.bmp", "BMP")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "folder.jpg").mkdir()  # a folder with an image's name is not an image
    assert list_images(tmp_path) == [tmp_path / "a.webp", tmp_path / "b.JPG", tmp_path / "c.png"]
    assert list_images(tmp_path, recursive=True)[-1] == tmp_path / "sub" / "d.bmp"
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp"} == set(IMAGE_SUFFIXES)
    assert all(check_image(str(p)) is None for p in list_images(tmp_path, recursive=True))


def test_folder_images_names_the_folder_and_the_fix(tmp_path):
    (tmp_path / "sub").mkdir()
    draw(tmp_path / "sub" / "a.jpg", "JPEG")
    with pytest.raises(NoImagesError, match=r"^--query .* holds no images \(\.jpg, .*; sub-folders are not searched\)"):
        folder_images(tmp_path, "--query ")
    with pytest.raises(NoImagesError, match="is not a folder; pass a folder of image files"):
        folder_images(tmp_path / "missing")
    assert folder_images(tmp_path / "sub") == [tmp_path / "sub" / "a.jpg"]
