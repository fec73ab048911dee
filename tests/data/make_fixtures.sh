#!/usr/bin/env bash
# Regenerate the speech fixtures used by the pocketsphinx recognizer tests.
#
# Needs Debian's festival, festvox-kallpc16k, festvox-us-slt-hts and sox. The
# sentences are short, plain and common so pocketsphinx's bundled US-English
# model recognises them reliably; each voice was checked against pocketsphinx
# and the better-recognised one kept. Output: 16 kHz mono 16-bit WAV, with
# ~0.3 s of silence either side, plus one 44.1 kHz copy to exercise resampling.
# (Not 8 kHz: the bundled model is wideband, and telephone-band audio loses the
# 4-8 kHz detail it relies on, so 8 kHz recognition is poor whatever the resampler.)
# fixtures.json maps each file to its reference text (lowercase, no punctuation).
set -euo pipefail
cd "$(dirname "$0")"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# name|festival voice|sentence
fixtures=(
  "call_back|cmu_us_slt_arctic_hts|please call me back tomorrow morning"
  "find_keys|kal_diphone|can you help me find my keys"
  "thank_you|kal_diphone|thank you very much for your help"
  "children_park|cmu_us_slt_arctic_hts|the children are playing in the park"
)

json="{"
sep=""
for entry in "${fixtures[@]}"; do
  IFS="|" read -r name voice text <<<"$entry"
  echo "$text" | text2wave -eval "(voice_${voice})" -o "$tmp/$name.wav"
  # -R: repeatable dither, so regenerating gives identical files.
  sox -R "$tmp/$name.wav" -r 16000 -c 1 -b 16 -e signed-integer "$name.wav" norm -3 pad 0.3 0.4
  json+="${sep}\n  \"$name.wav\": \"$text\""
  sep=","
done

# The same speech at 44.1 kHz (a common capture rate): the recognizer must resample it.
sox -R children_park.wav -r 44100 children_park_44k.wav
json+=",\n  \"children_park_44k.wav\": \"the children are playing in the park\""

printf "%b\n}\n" "$json" > fixtures.json
ls -l ./*.wav fixtures.json
