package web_test

import "testing"

// BenchmarkConsoleLedger: the asset ledger page at 100,000 devices.
func BenchmarkConsoleLedger(b *testing.B) { benchPage(b, "/ledger", `id="ledger-counts"`) }
