"""Line diffs computed the way git's xdiff computes them (pure, stdlib only, no I/O).

Two algorithms over sequences of lines (any hashable items; lines compare by equality only):

- :func:`myers` ports xdiff's default diff (``xdiffi.c``, ``xprepare.c``): common ends trimmed,
  lines without a match on the other side discarded up front (and lines with very many matches
  when they sit among such lines), Myers' O(ND) search with xdiff's cost cap and snake
  heuristics. ``blocksync.store.merge`` builds git's three-way merge on it, so the alignment (which of
  several equal lines a change lands next to) must be git's, not merely a valid one.
- :func:`histogram` ports git's histogram diff (``xhistogram.c``): recursively anchors on the
  longest run around the rarest common line, falling back to :func:`myers` where every common line
  occurs more than 64 times. It reads better than Myers on real edits; ``blocksync.text`` uses it.

Both finish with xdiff's change compaction (``xdl_change_compact``): a change that can slide over
equal lines is slid down as far as possible, then back up to line up with a change on the other
side, so hunks land where git puts them.

Cost. Preparation, compaction and the script are linear (runs of unchanged lines are skipped with
``bytearray.find``, not walked line by line). The search is O(N + D^2) for D changed lines when
changes are few, and capped per split by xdiff's cost limit (about sqrt(N) steps), which makes its
worst case about O(N^1.5) steps for inputs with many scattered changes between lines that repeat.
A :class:`Budget` bounds that: once it is spent, every region still to be searched is reported as
one replace (a correct, coarse diff) and ``budget.spent`` tells the caller.

Change flags are kept in a ``bytearray`` with one spare zero at the end, so that index -1 (the
line before the first) reads that zero, as xdiff's ``rchg[-1]`` sentinel does.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

#: xdiffi.c: the cost cap's floor, when heuristics start, and what counts as a good snake
_MAX_COST_MIN = 256
_HEUR_MIN_COST = 256
_SNAKE_CNT = 20
_K_HEUR = 4
_LINE_MAX = 1 << 62
#: xprepare.c: how far the multimatch scan looks, and the run ratio that discards a line
_SIMSCAN_WINDOW = 100
_KPDIS_RUN = 4
_MAX_EQLIMIT = 1024
#: xhistogram.c: more occurrences than this and a line cannot anchor; Myers decides instead
_MAX_CHAIN_LENGTH = 64


@dataclass(frozen=True)
class Change:
    """``chg1`` lines of the old side at ``i1`` became ``chg2`` lines of the new side at ``i2``."""

    i1: int
    i2: int
    chg1: int
    chg2: int


class Budget:
    """Work the search may still do, in steps of about one line comparison each."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    @property
    def spent(self) -> bool:
        return self.left < 0


def unlimited() -> Budget:
    return Budget(_LINE_MAX)


Lines = Sequence[Hashable]


def myers(old: Lines, new: Lines, budget: Budget | None = None) -> list[Change]:
    """git's default line diff of ``old`` and ``new`` (xdl_do_diff, compaction, script)."""
    ha1, ha2 = _classify(old, new)
    rchg1, rchg2 = _myers_flags(ha1, ha2, budget or unlimited())
    return _script(ha1, rchg1, ha2, rchg2)


def histogram(old: Lines, new: Lines, budget: Budget | None = None) -> list[Change]:
    """git's histogram line diff of ``old`` and ``new`` (after trimming common ends)."""
    ha1, ha2 = _classify(old, new)
    rchg1 = bytearray(len(ha1) + 1)
    rchg2 = bytearray(len(ha2) + 1)
    start, end1, end2 = _common_ends(ha1, ha2)
    budget = budget or unlimited()
    _histogram(ha1, ha2, rchg1, rchg2, start, end1 - start, start, end2 - start, budget)
    return _script(ha1, rchg1, ha2, rchg2)


def _script(ha1: list[int], rchg1: bytearray, ha2: list[int], rchg2: bytearray) -> list[Change]:
    _change_compact(ha1, rchg1, ha2, rchg2)
    _change_compact(ha2, rchg2, ha1, rchg1)
    return _build_script(rchg1, len(ha1), rchg2, len(ha2))


def _classify(old: Lines, new: Lines) -> tuple[list[int], list[int]]:
    """Number each distinct line (xdl_classify_record): from here on a line is its class."""
    classes: dict[Hashable, int] = {}
    ha1 = [classes.setdefault(line, len(classes)) for line in old]
    ha2 = [classes.setdefault(line, len(classes)) for line in new]
    return ha1, ha2


def _common_ends(ha1: list[int], ha2: list[int]) -> tuple[int, int, int]:
    """xdl_trim_ends: (length of the common prefix, end of each side's middle)."""
    lim = min(len(ha1), len(ha2))
    start = 0
    while start < lim and ha1[start] == ha2[start]:
        start += 1
    end1, end2 = len(ha1), len(ha2)
    while end1 > start and end2 > start and ha1[end1 - 1] == ha2[end2 - 1]:
        end1 -= 1
        end2 -= 1
    return start, end1, end2


# --- Myers (xprepare.c, xdiffi.c) --------------------------------------------------------------


def _bogosqrt(n: int) -> int:
    i = 1
    while n > 0:
        n >>= 2
        i <<= 1
    return i


def _myers_flags(ha1: list[int], ha2: list[int], budget: Budget) -> tuple[bytearray, bytearray]:
    """Which lines of each side changed (xdl_prepare_env with its optimisations, xdl_recs_cmp)."""
    rchg1 = bytearray(len(ha1) + 1)
    rchg2 = bytearray(len(ha2) + 1)
    start, end1, end2 = _common_ends(ha1, ha2)
    count1: dict[int, int] = {}
    count2: dict[int, int] = {}
    for c in ha1:
        count1[c] = count1.get(c, 0) + 1
    for c in ha2:
        count2[c] = count2.get(c, 0) + 1
    index1 = _keep(ha1, start, end1, count2, rchg1)
    index2 = _keep(ha2, start, end2, count1, rchg2)
    kept1 = [ha1[i] for i in index1]
    kept2 = [ha2[i] for i in index2]
    _recs_cmp(kept1, index1, rchg1, kept2, index2, rchg2, budget)
    return rchg1, rchg2


def _keep(ha: list[int], start: int, end: int, other: dict[int, int], rchg: bytearray) -> list[int]:
    """xdl_cleanup_records: the lines of ``ha[start:end]`` worth searching; the rest are marked
    changed now (no match on the other side, or many matches amid lines without any)."""
    mlim = min(_bogosqrt(len(ha)), _MAX_EQLIMIT)
    dis = bytearray(len(ha) + 1)
    for i in range(start, end):
        nm = other.get(ha[i], 0)
        dis[i] = 0 if nm == 0 else 2 if nm >= mlim else 1
    kept = []
    for i in range(start, end):
        if dis[i] == 1 or (dis[i] == 2 and not _clean_mmatch(dis, i, start, end - 1)):
            kept.append(i)
        else:
            rchg[i] = 1
    return kept


def _clean_mmatch(dis: bytearray, i: int, s: int, e: int) -> bool:
    """xdl_clean_mmatch: discard a many-match line only inside a run of unmatched lines."""
    s = max(s, i - _SIMSCAN_WINDOW)
    e = min(e, i + _SIMSCAN_WINDOW)
    rdis0, rpdis0 = 0, 1
    r = 1
    while i - r >= s:
        if not dis[i - r]:
            rdis0 += 1
        elif dis[i - r] == 2:
            rpdis0 += 1
        else:
            break
        r += 1
    if rdis0 == 0:
        return False
    rdis1, rpdis1 = 0, 1
    r = 1
    while i + r <= e:
        if not dis[i + r]:
            rdis1 += 1
        elif dis[i + r] == 2:
            rpdis1 += 1
        else:
            break
        r += 1
    if rdis1 == 0:
        return False
    rdis1 += rdis0
    rpdis1 += rpdis0
    return rpdis1 * _KPDIS_RUN < rpdis1 + rdis1


def _recs_cmp(
    ha1: list[int],
    index1: list[int],
    rchg1: bytearray,
    ha2: list[int],
    index2: list[int],
    rchg2: bytearray,
    budget: Budget,
) -> None:
    """xdl_recs_cmp over the kept lines, with a stack instead of recursion."""
    n1, n2 = len(ha1), len(ha2)
    ndiags = n1 + n2 + 3
    kvdf = [0] * ndiags  # indexed by diagonal + koff, shared by every split as in xdiff
    kvdb = [0] * ndiags
    koff = n2 + 1
    mxcost = max(_bogosqrt(ndiags), _MAX_COST_MIN)
    boxes = [(0, n1, 0, n2, False)]
    while boxes:
        off1, lim1, off2, lim2, need_min = boxes.pop()
        while off1 < lim1 and off2 < lim2 and ha1[off1] == ha2[off2]:
            off1 += 1
            off2 += 1
        while off1 < lim1 and off2 < lim2 and ha1[lim1 - 1] == ha2[lim2 - 1]:
            lim1 -= 1
            lim2 -= 1
        split = None
        if off1 != lim1 and off2 != lim2 and not budget.spent:
            split = _split(
                ha1, off1, lim1, ha2, off2, lim2, kvdf, kvdb, koff, need_min, mxcost, budget
            )
        if split is None:  # one side empty, or out of budget: the box is one replace
            for k in range(off1, lim1):
                rchg1[index1[k]] = 1
            for k in range(off2, lim2):
                rchg2[index2[k]] = 1
            continue
        i1, i2, min_lo, min_hi = split
        boxes.append((i1, lim1, i2, lim2, min_hi))
        boxes.append((off1, i1, off2, i2, min_lo))


def _split(
    ha1: list[int],
    off1: int,
    lim1: int,
    ha2: list[int],
    off2: int,
    lim2: int,
    kvdf: list[int],
    kvdb: list[int],
    koff: int,
    need_min: bool,
    mxcost: int,
    budget: Budget,
) -> tuple[int, int, bool, bool] | None:
    """xdl_split: where to cut the box (i1, i2, and whether each half must be minimal), found by
    searching forward from the top-left and backward from the bottom-right corner at once; past
    xdiff's cost cap, the furthest-reaching point. None once the budget is spent."""
    dmin, dmax = off1 - lim2, lim1 - off2
    fmid, bmid = off1 - off2, lim1 - lim2
    odd = (fmid - bmid) & 1
    fmin = fmax = fmid
    bmin = bmax = bmid
    kvdf[fmid + koff] = off1
    kvdb[bmid + koff] = lim1
    ec = 0
    while True:
        ec += 1
        got_snake = False
        work = 0
        if fmin > dmin:
            fmin -= 1
            kvdf[fmin - 1 + koff] = -1
        else:
            fmin += 1
        if fmax < dmax:
            fmax += 1
            kvdf[fmax + 1 + koff] = -1
        else:
            fmax -= 1
        for d in range(fmax, fmin - 1, -2):
            lo, hi = kvdf[d - 1 + koff], kvdf[d + 1 + koff]
            i1 = lo + 1 if lo >= hi else hi
            prev1 = i1
            i2 = i1 - d
            while i1 < lim1 and i2 < lim2 and ha1[i1] == ha2[i2]:
                i1 += 1
                i2 += 1
            work += i1 - prev1 + 1
            if i1 - prev1 > _SNAKE_CNT:
                got_snake = True
            kvdf[d + koff] = i1
            if odd and bmin <= d <= bmax and kvdb[d + koff] <= i1:
                return i1, i2, True, True

        if bmin > dmin:
            bmin -= 1
            kvdb[bmin - 1 + koff] = _LINE_MAX
        else:
            bmin += 1
        if bmax < dmax:
            bmax += 1
            kvdb[bmax + 1 + koff] = _LINE_MAX
        else:
            bmax -= 1
        for d in range(bmax, bmin - 1, -2):
            lo, hi = kvdb[d - 1 + koff], kvdb[d + 1 + koff]
            i1 = lo if lo < hi else hi - 1
            prev1 = i1
            i2 = i1 - d
            while i1 > off1 and i2 > off2 and ha1[i1 - 1] == ha2[i2 - 1]:
                i1 -= 1
                i2 -= 1
            work += prev1 - i1 + 1
            if prev1 - i1 > _SNAKE_CNT:
                got_snake = True
            kvdb[d + koff] = i1
            if not odd and fmin <= d <= fmax and i1 <= kvdf[d + koff]:
                return i1, i2, True, True

        budget.left -= work
        if budget.spent:
            return None
        if need_min:
            continue
        if got_snake and ec > _HEUR_MIN_COST:
            found = _good_snake(
                ha1,
                off1,
                lim1,
                ha2,
                off2,
                lim2,
                kvdf,
                kvdb,
                koff,
                fmin,
                fmax,
                fmid,
                bmin,
                bmax,
                bmid,
                ec,
            )
            if found is not None:
                return found
        if ec >= mxcost:
            return _furthest(off1, lim1, off2, lim2, kvdf, kvdb, koff, fmin, fmax, bmin, bmax)


def _good_snake(
    ha1: list[int],
    off1: int,
    lim1: int,
    ha2: list[int],
    off2: int,
    lim2: int,
    kvdf: list[int],
    kvdb: list[int],
    koff: int,
    fmin: int,
    fmax: int,
    fmid: int,
    bmin: int,
    bmax: int,
    bmid: int,
    ec: int,
) -> tuple[int, int, bool, bool] | None:
    """xdl_split's heuristic: a path far from its corner that ends in a long snake."""
    best, spl = 0, (0, 0)
    for d in range(fmax, fmin - 1, -2):
        i1 = kvdf[d + koff]
        i2 = i1 - d
        v = (i1 - off1) + (i2 - off2) - abs(d - fmid)
        if (
            v > max(best, _K_HEUR * ec)
            and off1 + _SNAKE_CNT <= i1 < lim1
            and off2 + _SNAKE_CNT <= i2 < lim2
            and ha1[i1 - _SNAKE_CNT : i1] == ha2[i2 - _SNAKE_CNT : i2]
        ):
            best, spl = v, (i1, i2)
    if best > 0:
        return spl[0], spl[1], True, False
    for d in range(bmax, bmin - 1, -2):
        i1 = kvdb[d + koff]
        i2 = i1 - d
        v = (lim1 - i1) + (lim2 - i2) - abs(d - bmid)
        if (
            v > max(best, _K_HEUR * ec)
            and off1 < i1 <= lim1 - _SNAKE_CNT
            and off2 < i2 <= lim2 - _SNAKE_CNT
            and ha1[i1 : i1 + _SNAKE_CNT] == ha2[i2 : i2 + _SNAKE_CNT]
        ):
            best, spl = v, (i1, i2)
    if best > 0:
        return spl[0], spl[1], False, True
    return None


def _furthest(
    off1: int,
    lim1: int,
    off2: int,
    lim2: int,
    kvdf: list[int],
    kvdb: list[int],
    koff: int,
    fmin: int,
    fmax: int,
    bmin: int,
    bmax: int,
) -> tuple[int, int, bool, bool]:
    """xdl_split past the cost cap: the furthest-reaching forward or backward point."""
    fbest = fbest1 = -1
    for d in range(fmax, fmin - 1, -2):
        i1 = min(kvdf[d + koff], lim1)
        i2 = i1 - d
        if lim2 < i2:
            i1, i2 = lim2 + d, lim2
        if fbest < i1 + i2:
            fbest, fbest1 = i1 + i2, i1
    bbest = bbest1 = _LINE_MAX
    for d in range(bmax, bmin - 1, -2):
        i1 = max(off1, kvdb[d + koff])
        i2 = i1 - d
        if i2 < off2:
            i1, i2 = off2 + d, off2
        if i1 + i2 < bbest:
            bbest, bbest1 = i1 + i2, i1
    if (lim1 + lim2) - bbest < fbest - (off1 + off2):
        return fbest1, fbest - fbest1, True, False
    return bbest1, bbest - bbest1, False, True


# --- histogram (xhistogram.c) ------------------------------------------------------------------


def _histogram(
    ha1: list[int],
    ha2: list[int],
    rchg1: bytearray,
    rchg2: bytearray,
    line1: int,
    count1: int,
    line2: int,
    count2: int,
    budget: Budget,
) -> None:
    """histogram_diff over ``ha1[line1:line1+count1]`` and the like (0-based here)."""
    regions = [(line1, count1, line2, count2)]
    while regions:
        line1, count1, line2, count2 = regions.pop()
        while count1 > 0 or count2 > 0:
            budget.left -= count1 + count2
            if not count1 or not count2 or budget.spent:
                rchg1[line1 : line1 + count1] = b"\x01" * count1
                rchg2[line2 : line2 + count2] = b"\x01" * count2
                break
            lcs = _find_lcs(ha1, line1, count1, ha2, line2, count2, budget)
            if lcs is None:  # every common line is too common to anchor on: Myers decides
                sub1, sub2 = _myers_flags(
                    ha1[line1 : line1 + count1], ha2[line2 : line2 + count2], budget
                )
                rchg1[line1 : line1 + count1] = sub1[:count1]
                rchg2[line2 : line2 + count2] = sub2[:count2]
                break
            begin1, end1, begin2, end2 = lcs
            if begin1 == end1:  # nothing in common
                rchg1[line1 : line1 + count1] = b"\x01" * count1
                rchg2[line2 : line2 + count2] = b"\x01" * count2
                break
            regions.append((line1, begin1 - line1, line2, begin2 - line2))
            count1, line1 = line1 + count1 - end1, end1
            count2, line2 = line2 + count2 - end2, end2


def _find_lcs(
    ha1: list[int],
    line1: int,
    count1: int,
    ha2: list[int],
    line2: int,
    count2: int,
    budget: Budget,
) -> tuple[int, int, int, int] | None:
    """find_lcs: the longest common run around the rarest common line, as (begin1, end1,
    begin2, end2) half-open; an empty run when nothing is common; None to fall back to Myers."""
    last1, last2 = line1 + count1, line2 + count2
    first: dict[int, list[int]] = {}  # class -> [first occurrence in the region, occurrences]
    line_rec: list[list[int]] = [[]] * count1
    next_ptr = [-1] * count1
    for ptr in range(last1 - 1, line1 - 1, -1):
        rec = first.get(ha1[ptr])
        if rec is None:
            rec = first[ha1[ptr]] = [ptr, 1]
        else:
            next_ptr[ptr - line1] = rec[0]
            rec[0] = ptr
            rec[1] += 1
        line_rec[ptr - line1] = rec
    best_cnt = _MAX_CHAIN_LENGTH + 1
    has_common = False
    lcs = (0, 1, 0, 1)  # xhistogram.c starts from a zeroed region, as long as a one-line run
    b_ptr = line2
    while b_ptr < last2:
        b_next = b_ptr + 1
        rec = first.get(ha2[b_ptr])
        if rec is not None:
            has_common = True
            if rec[1] <= best_cnt:
                a_ptr = rec[0]
                while a_ptr >= 0:
                    as_, bs, ae, be, rc = a_ptr, b_ptr, a_ptr + 1, b_ptr + 1, rec[1]
                    while line1 < as_ and line2 < bs and ha1[as_ - 1] == ha2[bs - 1]:
                        as_ -= 1
                        bs -= 1
                        if rc > 1:
                            rc = min(rc, line_rec[as_ - line1][1])
                    while ae < last1 and be < last2 and ha1[ae] == ha2[be]:
                        if rc > 1:
                            rc = min(rc, line_rec[ae - line1][1])
                        ae += 1
                        be += 1
                    budget.left -= ae - as_
                    b_next = max(b_next, be)
                    if lcs[1] - lcs[0] < ae - as_ or rc < best_cnt:
                        lcs = (as_, ae, bs, be)
                        best_cnt = rc
                    a_ptr = next_ptr[a_ptr - line1]
                    while 0 <= a_ptr < ae:
                        a_ptr = next_ptr[a_ptr - line1]
        b_ptr = b_next
    if not has_common:
        return (line1, line1, line2, line2)
    if best_cnt > _MAX_CHAIN_LENGTH:
        return None
    return lcs


# --- compaction and the edit script (xdiffi.c) -------------------------------------------------


class _Group:
    """xdlgroup: changed lines [start, end) of one side; ``end`` is the unchanged line after."""

    __slots__ = ("end", "start")

    def __init__(self, rchg: bytearray) -> None:
        self.start = 0
        self.end = rchg.find(0)

    def next(self, rchg: bytearray, n: int) -> bool:
        if self.end == n:
            return False
        self.start = self.end + 1
        self.end = rchg.find(0, self.start)
        return True

    def previous(self, rchg: bytearray) -> bool:
        if self.start == 0:
            return False
        self.end = self.start - 1
        self.start = rchg.rfind(0, 0, self.end) + 1
        return True

    def slide_down(self, ha: list[int], rchg: bytearray, n: int) -> bool:
        if self.end < n and ha[self.start] == ha[self.end]:
            rchg[self.start] = 0
            rchg[self.end] = 1
            self.start += 1
            self.end = rchg.find(0, self.end + 1)
            return True
        return False

    def slide_up(self, ha: list[int], rchg: bytearray) -> bool:
        if self.start > 0 and ha[self.start - 1] == ha[self.end - 1]:
            self.start -= 1
            self.end -= 1
            rchg[self.start] = 1
            rchg[self.end] = 0
            self.start = rchg.rfind(0, 0, self.start) + 1
            return True
        return False

    def skip(self, rchg: bytearray, steps: int) -> None:
        """``steps`` times ``next``, jumping over runs of unchanged lines."""
        pos = self.end  # an unchanged line: each step passes one
        while True:
            changed = rchg.find(1, pos)
            if changed == -1 or changed - pos >= steps:
                self.start = pos + steps
                break
            steps -= changed - pos
            pos = rchg.find(0, changed)
        self.end = rchg.find(0, self.start)


def _change_compact(ha: list[int], rchg: bytearray, hao: list[int], rchgo: bytearray) -> None:
    """xdl_change_compact (without the indent heuristic, which git merge-file does not use)."""
    n, no = len(ha), len(hao)
    g, go = _Group(rchg), _Group(rchgo)
    while True:
        if g.end != g.start:
            _compact_group(ha, rchg, n, g, rchgo, no, go)
        if g.end == n:
            break
        # to the next non-empty group, moving go over as many groups (their unchanged lines pair up)
        changed = rchg.find(1, g.end + 1)
        target = n if changed == -1 else changed
        steps = target - g.end
        g.start, g.end = target, rchg.find(0, target)
        go.skip(rchgo, steps)


def _compact_group(
    ha: list[int], rchg: bytearray, n: int, g: _Group, rchgo: bytearray, no: int, go: _Group
) -> None:
    while True:
        groupsize = g.end - g.start
        end_matching_other = -1
        while g.slide_up(ha, rchg):
            go.previous(rchgo)
        earliest_end = g.end
        if go.end > go.start:
            end_matching_other = g.end
        while g.slide_down(ha, rchg, n):
            go.next(rchgo, no)
            if go.end > go.start:
                end_matching_other = g.end
        if groupsize == g.end - g.start:
            break
    if g.end != earliest_end and end_matching_other != -1:
        while go.end == go.start:
            g.slide_up(ha, rchg)
            go.previous(rchgo)


def _build_script(rchg1: bytearray, n1: int, rchg2: bytearray, n2: int) -> list[Change]:
    """xdl_build_script: the changed runs of both sides, paired, in order."""
    changes = []
    i1, i2 = n1, n2
    while True:
        # walk back over lines unchanged on both sides in one jump
        p1 = rchg1.rfind(1, 0, i1)
        p2 = rchg2.rfind(1, 0, i2)
        if p1 == -1 and p2 == -1:
            break
        steps = min(i1 - 1 - p1, i2 - 1 - p2)
        i1 -= steps
        i2 -= steps
        l1, l2 = i1, i2
        i1 = rchg1.rfind(0, 0, i1) + 1
        i2 = rchg2.rfind(0, 0, i2) + 1
        changes.append(Change(i1, i2, l1 - i1, l2 - i2))
        if i1 == 0:  # then i2 is 0 too: both sides have as many unchanged lines
            break
        i1 -= 1
        i2 -= 1
    changes.reverse()
    return changes
