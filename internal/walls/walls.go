// Package walls holds only a test: it guards the walls between the parts of
// mamori. The agent runs on every terminal and must stay small and free of
// server code and database drivers; the server never carries Windows
// registry code; shared code in internal/ depends on neither side.
package walls
