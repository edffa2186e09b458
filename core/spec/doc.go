// Package spec reads and writes the NECOS YAML documents: the slice spec a tenant
// sends to create_slice ([ParseSlice], [Slice]), the same slice once created, enriched
// with what the platform filled in ([Render], [Status], [ParseCreatedSlice]), the
// service deployment sent to deploy_service ([ParseService], [Service]) and its
// elasticity policies ([ParsePolicy], [Policy]).
//
// It accepts what the original MUSTS components exchanged, quirks included: the fields
// of a "- dc-slice-part:" or "- vdu:" item written beside the key instead of under it,
// "slices: slice:" as well as "slices: sliced:", versions as numbers, memory-mb as N
// or {greater_or_equal: N}, a link end as a name or as {name, id}, net-model beside
// cost. JSON, being YAML, is read too.
//
// Strictness: a value of the wrong type is an error ("must be an integer, got string
// \"two\""); a key this package does not know is a warning (Warnings of the result) and
// is kept, to be rendered back as given. Every error of a document is reported at once
// in an *[Error], each [FieldError] naming the field by its path in the document, e.g.
//
//	slices.sliced.slice-parts[2].dc-slice-part.VIM.vdus[0].vdu.epa-attributes.host-epa.cpu-number: must be a positive integer, got -2
//
// Hostile input: a [Parser] refuses documents larger than MaxBytes, and counts nodes
// while expanding aliases, refusing beyond MaxNodes (a "billion laughs" document is
// refused after that many nodes, never built) or deeper than MaxDepth.
//
// Names: a VDU with instance-count n has nodes "<vdu>-1" ... "<vdu>-n" ([NodeName]); a
// VDU whose name says master is of type master, one whose name says node or worker is
// a worker ([NodeTypeOf]).
//
// Service files refer to the created slice by name: ${parts.dc-slice1.vdus.k8s-master.ip}
// and the like, substituted by [Expand] (docs/service-references.md). Elasticity
// policies are described in docs/elasticity.md.
//
// The package is pure logic: it imports nothing of the core or of plugins, and the
// core fills [Status] from what the plugins report.
package spec
