package v1

// SiteRelease is the answer of POST /v1/sites/release: the network namespaces of the
// providers' sites removed, and the sites kept with why.
type SiteRelease struct {
	Removed []string   `json:"removed"`
	Kept    []KeptSite `json:"kept"`
}

// KeptSite is a site that was not released.
type KeptSite struct {
	// Site names the providers whose site it is.
	Site   string `json:"site"`
	Netns  string `json:"netns"`
	Reason string `json:"reason"`
	// Slices are the live slices holding resources there, when that is why.
	Slices []string `json:"slices,omitempty"`
}
