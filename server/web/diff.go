package web

import "strings"

// diffLine is one line of a line diff: Op is ' ' (same), '-' (only in the
// old text) or '+' (only in the new one).
type diffLine struct {
	Op   string
	Text string
}

// maxDiffCells bounds the LCS table; larger inputs are shown as "all
// removed, all added", which is still correct, only less helpful.
const maxDiffCells = 4 << 20

// lineDiff is a longest-common-subsequence line diff of two texts. Lines
// that differ only by a trailing comma are the same line: in JSON, a key
// added after the last one adds a comma to the line before it, which is
// not a change of that setting (issue #19); such a line is shown as it
// reads in the new text.
func lineDiff(a, b string) []diffLine {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	kx, ky := commaless(x), commaless(y)
	n, m := len(x), len(y)
	var out []diffLine
	if n*m > maxDiffCells {
		for _, l := range x {
			out = append(out, diffLine{"-", l})
		}
		for _, l := range y {
			out = append(out, diffLine{"+", l})
		}
		return out
	}
	// lcs[i][j]: LCS length of x[i:] and y[j:].
	lcs := make([][]int32, n+1)
	for i := range lcs {
		lcs[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if kx[i] == ky[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case kx[i] == ky[j]:
			out = append(out, diffLine{" ", y[j]})
			i++
			j++
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, diffLine{"-", x[i]})
			i++
		default:
			out = append(out, diffLine{"+", y[j]})
			j++
		}
	}
	for ; i < n; i++ {
		out = append(out, diffLine{"-", x[i]})
	}
	for ; j < m; j++ {
		out = append(out, diffLine{"+", y[j]})
	}
	return out
}

// commaless are the lines without trailing blanks and one trailing comma.
func commaless(ls []string) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = strings.TrimSuffix(strings.TrimRight(l, " \t\r"), ",")
	}
	return out
}

// changed reports whether a diff has any change.
func changed(d []diffLine) bool {
	for _, l := range d {
		if l.Op != " " {
			return true
		}
	}
	return false
}

// diffContext is how many unchanged lines are kept around each change.
const diffContext = 3

// withContext keeps the changed lines and diffContext unchanged lines on
// either side; each run of dropped lines becomes one "…" line.
func withContext(d []diffLine) []diffLine {
	keep := make([]bool, len(d))
	for i, l := range d {
		if l.Op == " " {
			continue
		}
		for j := max(0, i-diffContext); j <= min(len(d)-1, i+diffContext); j++ {
			keep[j] = true
		}
	}
	var out []diffLine
	skipped := false
	for i, l := range d {
		if keep[i] {
			out = append(out, l)
			skipped = false
		} else if !skipped {
			out = append(out, diffLine{" ", "…"})
			skipped = true
		}
	}
	return out
}
