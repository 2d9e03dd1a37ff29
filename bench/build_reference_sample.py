"""Build app/data/reference_sentences.json.gz, the generic sentences query correction uses.

From the Tatoeba test sets in ../shared/data/tatoeba-v1 (CC BY 2.0 FR, tatoeba.org; see NOTICE):
the first N sentences of each language that the language detector can name, keyed by the ISO
639-1 code that ingestion/language.py returns (langcodes maps Tatoeba's ISO 639-3 codes; where
several files map to one code, e.g. ara/arq/arz, the largest wins). English comes from the
English side of the German pairs. Usage:
  .venv/bin/python bench/build_reference_sample.py [--per-language 200]
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

import langcodes

REPO = Path(__file__).resolve().parent.parent
TATOEBA = REPO.parent / "shared" / "data" / "tatoeba-v1"
TARGET = REPO / "app" / "data" / "reference_sentences.json.gz"


def detector_languages() -> set[str]:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    from ingestion.language import _TO_ISO639_1

    labels = LanguageIdentifier.from_model_file(MODEL_FILE).nb_classes
    return {_TO_ISO639_1.get(str(c), str(c)) for c in labels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=TATOEBA)
    parser.add_argument("--per-language", type=int, default=200)
    args = parser.parse_args()
    known = detector_languages()
    best: dict[str, list[str]] = {}
    files = {"en": args.data / "tatoeba.deu-eng.eng"}
    for path in sorted(args.data.glob("tatoeba.*-eng.*")):
        code3 = path.suffix[1:]
        if code3 == "eng":
            continue
        code = langcodes.standardize_tag(code3, macro=True).split("-")[0]
        if code not in known or code == "en":
            continue
        lines = [s.strip() for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
        if len(lines) > len(best.get(code, [])):
            best[code], files[code] = lines, path
    best["en"] = files["en"].read_text(encoding="utf-8").splitlines()
    sample = {code: rows[: args.per_language] for code, rows in sorted(best.items())}
    payload = {
        "source": "Tatoeba (tatoeba.org), CC BY 2.0 FR, via LASER data/tatoeba/v1",
        "files": {code: files[code].name for code in sample},
        "sentences": sample,
    }
    TARGET.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(TARGET, "wt", encoding="utf-8", compresslevel=9) as f:
        json.dump(payload, f, ensure_ascii=False, sort_keys=True)
    print(f"{len(sample)} languages, {TARGET.stat().st_size / 1024:.0f} KiB -> {TARGET}")


if __name__ == "__main__":
    main()
