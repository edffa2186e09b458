package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/necos/necos/api/client"
	v1 "github.com/necos/necos/api/v1"
	"github.com/spf13/cobra"
)

func newSliceCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "slice",
		Aliases: []string{"slices"},
		Short:   "Create, list, read, follow and delete slices",
	}
	cmd.AddCommand(newSliceCreate(a), newSliceList(a), newSliceGet(a), newSliceDelete(a), newSliceWatch(a),
		newSliceEvents(a), newSlicePolicies(a), newSliceMetrics(a), newSliceTimings(a), newSlicePortForward(a), newSliceSSH(a))
	return cmd
}

func newSliceCreate(a *app) *cobra.Command {
	var file string
	var wait, showCreds bool
	cmd := &cobra.Command{
		Use:   "create -f FILE",
		Short: "Create a slice from a NECOS slice spec (YAML or JSON)",
		Long: `Create a slice from a NECOS slice spec, YAML or JSON ("-f -" reads standard input).
Without --wait the command returns once the slice is accepted: follow it with
"necosctl slice watch ID". With --wait it returns once the slice is Ready, or fails
with the reason per part.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			doc, err := readSpec(file, cmd.InOrStdin())
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.CreateSlice(cmd.Context(), doc, specType(file, doc), wait)
			if err != nil {
				return err
			}
			return a.printSlice(s, showCreds)
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "slice spec file, - for standard input")
	cmd.Flags().BoolVar(&wait, "wait", false, "return once the slice is Ready (or has failed)")
	cmd.Flags().BoolVar(&showCreds, showCredentialsFlag, false, "print the parts' secrets (private keys, kubeconfigs, passwords)")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

const showCredentialsFlag = "show-credentials"

// printSlice prints a slice, its parts' secrets only when showCreds: a terminal's
// scroll-back or a pasted output should not leak a private key by default.
func (a *app) printSlice(s *v1.Slice, showCreds bool) error {
	hidden := false
	if !showCreds {
		for i := range s.Parts {
			if c := s.Parts[i].Credential; c != nil && c.Secret != "" {
				cc := *c
				cc.Secret = ""
				s.Parts[i].Credential, hidden = &cc, true
			}
		}
	}
	return a.print(s, func(w io.Writer) {
		sliceTable(w, s)
		credentialsTable(w, s, hidden)
	})
}

func credentialsTable(w io.Writer, s *v1.Slice, hidden bool) {
	var secrets []string
	first := true
	for _, p := range s.Parts {
		c := p.Credential
		if c == nil || c.Kind == "" {
			continue
		}
		if first {
			fmt.Fprintln(w)
			row(w, "CREDENTIAL", "KIND", "USER", "HOST KEY", "EXPIRES")
			first = false
		}
		hostKey := c.HostKey
		if k := strings.Fields(hostKey); len(k) >= 2 && len(k[1]) > 16 {
			hostKey = k[0] + " ..." + k[1][len(k[1])-12:] // enough to recognise it
		}
		row(w, p.Name, c.Kind, c.User, hostKey, when(c.Expires))
		if c.Secret != "" {
			secrets = append(secrets, fmt.Sprintf("\n# %s of part %s\n%s", c.Kind, p.Name, strings.TrimRight(c.Secret, "\n")))
		}
	}
	if hidden {
		fmt.Fprintf(w, "\n(secrets hidden: --%s prints them)\n", showCredentialsFlag)
	}
	for _, sec := range secrets {
		fmt.Fprintln(w, sec)
	}
}

func readSpec(file string, stdin io.Reader) ([]byte, error) {
	return readInput(file, stdin, "slice spec")
}

// readInput reads a document from a file, or from stdin when file is "-"; what names
// the document in errors.
func readInput(file string, stdin io.Reader, what string) ([]byte, error) {
	if file == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	return b, nil
}

// specType tells JSON from YAML by the file's extension, or by its first character.
func specType(file string, doc []byte) string {
	switch strings.ToLower(filepath.Ext(file)) {
	case ".json":
		return client.JSON
	case ".yaml", ".yml":
		return client.YAML
	}
	if t := bytes.TrimSpace(doc); len(t) > 0 && t[0] == '{' && json.Valid(t) {
		return client.JSON
	}
	return client.YAML
}

func newSliceList(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List your slices",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.ListSlices(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(v1.SliceList{Slices: l}, func(w io.Writer) {
				row(w, "ID", "NAME", "STATE", "PARTS", "LINKS", "COST/DAY", "CREATED", "MESSAGE")
				for _, s := range l {
					row(w, s.ID, clip(s.Name, 32), state(s.State, s.Deleting), s.Parts, s.Links, euros(s.CostPerDay),
						when(&s.CreatedAt), clip(s.Message, 60))
				}
			})
		},
	}
}

func newSliceGet(a *app) *cobra.Command {
	var necos, showCreds bool
	cmd := &cobra.Command{
		Use:   "get ID",
		Short: "Show a slice: parts, nodes and their addresses, links, prices",
		Long: `Show a slice. The API hands the parts' credentials to the slice's owner only, and
necosctl shows their kind and user but not their secrets (private keys, kubeconfigs,
passwords) unless --show-credentials is given, in every output format.
With --necos, print the slice in the NECOS YAML format, enriched with what was created,
as create_slice answers it (whatever -o says; it carries the credentials, as the
original's did).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			if necos {
				doc, err := c.GetSliceNECOS(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				_, err = a.out.Write(doc)
				return err
			}
			s, err := c.GetSlice(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.printSlice(s, showCreds)
		},
	}
	cmd.Flags().BoolVar(&necos, "necos", false, "print the NECOS YAML of the slice")
	cmd.Flags().BoolVar(&showCreds, showCredentialsFlag, false, "print the parts' secrets (private keys, kubeconfigs, passwords)")
	return cmd
}

func newSliceDelete(a *app) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:     "delete ID",
		Aliases: []string{"rm"},
		Short:   "Decommission a slice",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			s, err := c.DeleteSlice(cmd.Context(), args[0], wait)
			if err != nil {
				return err
			}
			if s == nil {
				fmt.Fprintf(a.out, "slice %s decommissioned\n", args[0])
				return nil
			}
			return a.print(s, func(w io.Writer) {
				fmt.Fprintf(w, "slice %s is being decommissioned (follow it with: necosctl slice watch %s)\n", s.ID, s.ID)
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "return once the slice is gone from every provider")
	return cmd
}

func newSliceWatch(a *app) *cobra.Command {
	var untilReady bool
	cmd := &cobra.Command{
		Use:   "watch ID",
		Short: "Follow a slice's events as they happen, until interrupted or the slice is gone",
		Long: `Print the slice's events, past then live, one line each: time (to the millisecond),
event, part or link, message. A Ready slice keeps being followed — elastic actions,
services, its decommission — until the slice is gone (exit 0) or the command is
interrupted (Ctrl-C, exit 0). A Failed slice ends the command (exit 1), unless it is
being decommissioned: that is followed until it is gone.

With --until-ready the command ends as soon as the slice is Ready (exit 0), as scripts
that wait for a slice need. -o json prints one JSON event per line.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			err = a.watch(cmd, c, args[0], untilReady)
			if !untilReady && cmd.Context().Err() != nil && errors.Is(err, cmd.Context().Err()) {
				return nil // interrupted: what following ends with
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&untilReady, "until-ready", false, "stop once the slice is Ready (exit 0) or Failed (exit 1)")
	return cmd
}

// errFailed ends a watch of a slice that failed.
type errFailed struct{ id, message string }

func (e *errFailed) Error() string { return fmt.Sprintf("slice %s failed: %s", e.id, e.message) }

// watch prints a slice's events until it is gone, failed, or (untilReady) Ready.
func (a *app) watch(cmd *cobra.Command, c *client.Client, id string, untilReady bool) error {
	live, deleting := false, false
	var failure error
	err := c.Watch(cmd.Context(), id, func(ev client.StreamEvent) error {
		if err := a.printEvent(ev); err != nil {
			return err
		}
		switch {
		case ev.Name == v1.StreamLive:
			live, deleting = true, ev.State.Deleting || ev.State.State == "Deleting"
			// Only the live state says whether the slice is at rest now.
			switch {
			case deleting:
			case ev.State.State == "Ready" && untilReady:
				return client.ErrStop
			case ev.State.State == "Failed":
				failure = &errFailed{id, ev.State.Message}
				return client.ErrStop
			}
		case ev.Event == nil || !live:
			// Past events are history: only the live state decides when to stop.
		case ev.Event.Type == "slice.decommission-requested" || ev.Event.Type == "slice.deleting":
			deleting = true
		case deleting:
			// Followed until gone (stream.end).
		case ev.Event.Type == "slice.ready" && untilReady:
			return client.ErrStop
		case ev.Event.Type == "slice.failed" || ev.Event.Type == "slice.refused" || ev.Event.Type == "slice.unavailable":
			failure = &errFailed{id, ev.Event.Message}
			return client.ErrStop
		}
		return nil
	})
	if err != nil {
		return err
	}
	return failure
}

func (a *app) printEvent(ev client.StreamEvent) error {
	if a.output != "table" {
		var v any = ev.Event
		if ev.Event == nil {
			v = map[string]any{"type": ev.Name, "state": ev.State.State, "deleting": ev.State.Deleting, "message": ev.State.Message}
		}
		if a.output == "json" {
			b, err := json.Marshal(v)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.out, "%s\n", b)
			return err
		}
		if _, err := fmt.Fprintln(a.out, "---"); err != nil {
			return err
		}
		return a.print(v, nil)
	}
	switch ev.Name {
	case v1.StreamLive:
		_, err := fmt.Fprintf(a.out, "%s  %-22s %-28s %s\n", clock(time.Now()), "(now)", "", describeState(ev.State))
		return err
	case v1.StreamEnd:
		_, err := fmt.Fprintf(a.out, "%s  %-22s %-28s %s\n", clock(time.Now()), "(gone)", "", "slice decommissioned")
		return err
	}
	e := ev.Event
	_, err := fmt.Fprintf(a.out, "%s  %-22s %-28s %s\n", clock(e.Time), e.Type, eventSubject(e), e.Message)
	return err
}

func describeState(s *v1.StreamState) string {
	out := "slice is " + s.State
	if s.Deleting && s.State != "Deleting" {
		out += ", being decommissioned"
	}
	if s.Message != "" {
		out += ": " + s.Message
	}
	return out
}

func newSliceTimings(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "timings ID",
		Short: "Show how long each phase of a slice's life and of each elastic action took",
		Long: `Show the phases of a slice's life (placement, each part's provisioning, each link,
creation as a whole, monitoring start, service deployments, decommission) with start,
end and duration, then each elastic action as the chain threshold crossed -> decision
-> action done -> post-deployment -> effective (the metric back on the right side of
the threshold). A phase still running shows how long it has run so far.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			t, err := c.Timings(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return a.print(t, func(w io.Writer) { timingsTable(w, t) })
		},
	}
}

func timingsTable(w io.Writer, t *v1.Timings) {
	row(w, "PHASE", "OF", "START", "END", "DURATION", "OUTCOME")
	for _, p := range t.Phases {
		row(w, p.Name, p.Subject, clock(p.Start), endClock(p.End), seconds(p.Seconds), p.Outcome)
	}
	for i, act := range t.Actions {
		fmt.Fprintf(w, "\nelastic action %d: policy %s on part %s, %s %s\n", i+1, act.Policy, act.Part, act.Action, act.Outcome)
		row(w, "PHASE", "", "START", "END", "DURATION", "OUTCOME")
		for _, p := range act.Phases {
			row(w, p.Name, "", clock(p.Start), endClock(p.End), seconds(p.Seconds), p.Outcome)
		}
	}
}

func endClock(t *time.Time) string {
	if t == nil {
		return ""
	}
	return clock(*t)
}

// seconds prints a duration in seconds, to the millisecond.
func seconds(s float64) string { return fmt.Sprintf("%.3fs", s) }
