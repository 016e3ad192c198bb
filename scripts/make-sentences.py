#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes English sentences from WordNet's example sentences (Debian's wordnet-base) as
calibration, evaluation and held-out sets, one sentence per line.

    scripts/make-sentences.py [--calib N] [--eval M] [--heldout K] [--seed S] [--wordnet DIR]
                              CALIB_FILE EVAL_FILE [HELDOUT_FILE]

The examples are the double-quoted parts of each synset's gloss (after '|') in
DIR/data.{noun,verb,adj,adv}. Kept: 4 to 30 words of printable ASCII, runs of spaces collapsed to
one, each distinct sentence once. They are sorted, then shuffled with a fixed seed, so that the
output is the same on every run. The sets are disjoint and each is stable on its own: EVAL_FILE is
the first M of the shuffled list, HELDOUT_FILE the last K, CALIB_FILE the N after the evaluation
set (so changing --calib changes neither the evaluation nor the held-out sentences).
Python 3 standard library only.
"""
import argparse
import os
import random
import re
import sys

POS_FILES = ("data.noun", "data.verb", "data.adj", "data.adv")
QUOTED = re.compile(r'"([^"]*)"')
MIN_WORDS, MAX_WORDS = 4, 30


def fail(msg):
    print(f"make-sentences: {msg}", file=sys.stderr)
    sys.exit(1)


def examples(wordnet_dir):
    """Every quoted example of every gloss, in file order (duplicates included)."""
    for name in POS_FILES:
        path = os.path.join(wordnet_dir, name)
        try:
            with open(path, encoding="latin-1") as f:
                for line in f:
                    # The license header's lines start with two spaces; data lines with an offset.
                    if line.startswith("  ") or "|" not in line:
                        continue
                    gloss = line.split("|", 1)[1]
                    yield from QUOTED.findall(gloss)
        except OSError as e:
            fail(f"cannot read WordNet file '{path}': {e.strerror} (install wordnet-base or pass --wordnet DIR)")


def keep(sentence):
    """The sentence with its spaces collapsed, or None when it is not 4-30 printable-ASCII words."""
    if not all(" " <= c <= "~" for c in sentence):
        return None
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    return " ".join(words)


def sentences(wordnet_dir, seed):
    distinct = sorted({s for s in map(keep, examples(wordnet_dir)) if s is not None})
    random.Random(seed).shuffle(distinct)
    return distinct


def write_lines(path, lines):
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "w", encoding="ascii", newline="\n") as f:
            f.writelines(line + "\n" for line in lines)
        os.replace(tmp, path)
    except OSError as e:
        fail(f"cannot write '{path}': {e.strerror}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("calib_file")
    p.add_argument("eval_file")
    p.add_argument("heldout_file", nargs="?")
    p.add_argument("--calib", type=int, default=2000, metavar="N", help="calibration sentences (2000)")
    p.add_argument("--eval", type=int, default=500, metavar="M", help="evaluation sentences (500)")
    p.add_argument("--heldout", type=int, default=None, metavar="K",
                   help="held-out sentences (500 when HELDOUT_FILE is given)")
    p.add_argument("--seed", type=int, default=20240524, help="shuffle seed (20240524)")
    p.add_argument("--wordnet", default="/usr/share/wordnet", metavar="DIR",
                   help="WordNet data directory (/usr/share/wordnet)")
    a = p.parse_args()
    if a.heldout is not None and a.heldout_file is None:
        fail(f"--heldout {a.heldout} needs a HELDOUT_FILE argument")
    heldout = (500 if a.heldout is None else a.heldout) if a.heldout_file else 0
    for name, v in (("--calib", a.calib), ("--eval", a.eval), ("--heldout", heldout)):
        if v < 0:
            fail(f"{name} must be >= 0, got {v}")
    files = [f for f in (a.calib_file, a.eval_file, a.heldout_file) if f is not None]
    if len(set(map(os.path.abspath, files))) != len(files):
        fail(f"the output files must differ, got {' '.join(files)}")

    pool = sentences(a.wordnet, a.seed)
    need = a.calib + a.eval + heldout
    if need > len(pool):
        fail(f"asked for {need} sentences (--calib {a.calib} + --eval {a.eval} + --heldout {heldout}), "
             f"WordNet in '{a.wordnet}' has {len(pool)}")
    evaluation = pool[:a.eval]
    calibration = pool[a.eval:a.eval + a.calib]
    held = pool[len(pool) - heldout:] if heldout else []
    write_lines(a.calib_file, calibration)
    write_lines(a.eval_file, evaluation)
    if a.heldout_file:
        write_lines(a.heldout_file, held)
    print(f"make-sentences: {len(pool)} distinct WordNet sentences; wrote {len(calibration)} to {a.calib_file}, "
          f"{len(evaluation)} to {a.eval_file}" + (f", {len(held)} to {a.heldout_file}" if a.heldout_file else ""),
          file=sys.stderr)


if __name__ == "__main__":
    main()
