package sro

// SetIDSuffix makes Submit draw its ids' random ends from f until the returned function
// restores the real draw.
func SetIDSuffix(f func() string) (restore func()) {
	old := idSuffix
	idSuffix = f
	return func() { idSuffix = old }
}
