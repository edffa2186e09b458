package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/necos/necos/api/client"
	v1 "github.com/necos/necos/api/v1"
	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// servicePoll is how often deploy --wait reads the service's progress.
const servicePoll = 500 * time.Millisecond

func newServiceCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "service",
		Aliases: []string{"services", "svc"},
		Short:   "Deploy services onto slices, follow them, list and undeploy them",
		Long: `Deploy a service document (deploy_service: commands and Kubernetes manifests per VDU,
elasticity policies per part) onto a slice. A slice is named by its id or by the id its
spec gave it. The document may refer to the created slice by name:
${parts.core-dc.vdus.core_vm.ip}, ${parts.dc-slice1.vim-ref.ip-api}, ${slice.id}...`,
	}
	cmd.AddCommand(newServiceDeploy(a), newServiceGet(a), newServiceList(a), newServiceDelete(a))
	return cmd
}

func newServiceDeploy(a *app) *cobra.Command {
	var file, slice, name string
	var wait bool
	cmd := &cobra.Command{
		Use:   "deploy -f FILE [--slice SLICE] [--name NAME] [--wait]",
		Short: "Deploy a service document onto a slice",
		Long: `Deploy a service document, YAML or JSON ("-f -" reads standard input), onto the slice
--slice names, else the one the document's slices.sliced.id names. The service is --name,
else a digest of the document: deploying the same document again deploys the same
service again, running its steps again.

Without --wait the command returns once the deployment has started. With --wait it prints
each step as it ends (part/node, step, state, time, command; a failing step's output) and
returns once every step has run or failed: exit 1 when the service failed.`,
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
			ctx := cmd.Context()
			if slice == "" {
				if slice, err = documentSlice(doc); err != nil {
					return err
				}
			}
			sl, err := resolveSlice(ctx, c, slice)
			if err != nil {
				return err
			}
			s, err := c.DeployService(ctx, sl.ID, doc, specType(file, doc), name, false)
			if err != nil {
				return err
			}
			if !wait {
				return a.print(s, func(w io.Writer) {
					fmt.Fprintf(w, "service %s is being deployed onto slice %s (follow it with: necosctl service get %s %s)\n",
						s.ID, sl.ID, sl.ID, s.ID)
				})
			}
			final, err := a.followService(ctx, c, sl.ID, s.ID)
			if err != nil {
				return err
			}
			if a.output != "table" {
				if err := a.print(final, nil); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(a.out, "service %s %s: %s\n", final.ID, final.State, final.Message)
			}
			if final.State == "Failed" {
				return &errServiceFailed{id: final.ID, message: final.Message}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "", "service document, - for standard input")
	cmd.Flags().StringVar(&slice, "slice", "", "slice id or spec id (default: the document's slices.sliced.id)")
	cmd.Flags().StringVar(&name, "name", "", "name of the service (default: a digest of the document)")
	cmd.Flags().BoolVar(&wait, "wait", false, "print each step as it ends and return once the service is deployed or failed")
	_ = cmd.MarkFlagRequired("file")
	return cmd
}

// errServiceFailed ends a deploy --wait whose service failed.
type errServiceFailed struct{ id, message string }

func (e *errServiceFailed) Error() string {
	return fmt.Sprintf("service %s failed: %s", e.id, e.message)
}

// documentSlice reads slices.sliced.id from a service document.
func documentSlice(doc []byte) (string, error) {
	var d struct {
		Slices struct {
			Sliced struct {
				ID any `yaml:"id"`
			} `yaml:"sliced"`
		} `yaml:"slices"`
	}
	if err := yaml.Unmarshal(doc, &d); err != nil {
		return "", fmt.Errorf("read the service document: %w", err)
	}
	if d.Slices.Sliced.ID == nil {
		return "", errors.New("the document names no slice (slices.sliced.id): give --slice")
	}
	return fmt.Sprint(d.Slices.Sliced.ID), nil
}

// resolveSlice finds the tenant's slice by id, else by the id its spec gave it.
func resolveSlice(ctx context.Context, c *client.Client, ref string) (*v1.SliceSummary, error) {
	l, err := c.ListSlices(ctx)
	if err != nil {
		return nil, err
	}
	var byName []v1.SliceSummary
	for _, s := range l {
		if s.ID == ref {
			return &s, nil
		}
		if s.Name == ref && !s.Deleting {
			byName = append(byName, s)
		}
	}
	switch len(byName) {
	case 0:
		return nil, fmt.Errorf("no slice %q (by id or spec id): necosctl slice list shows yours", ref)
	case 1:
		return &byName[0], nil
	}
	return nil, fmt.Errorf("several slices are named %q: give the slice's id", ref)
}

// followService polls a service until its deployment has ended, printing each step as
// it ends (in table output).
func (a *app) followService(ctx context.Context, c *client.Client, sliceID, id string) (*v1.Service, error) {
	printed := map[string]bool{}
	for {
		s, err := c.GetService(ctx, sliceID, id)
		if err != nil {
			return nil, err
		}
		if a.output == "table" {
			a.printProgress(s, printed)
		}
		if s.State != "Deploying" {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(servicePoll):
		}
	}
}

// printProgress prints the steps (and part failures without steps) not printed yet.
func (a *app) printProgress(s *v1.Service, printed map[string]bool) {
	for _, p := range s.Parts {
		steps := 0
		for _, v := range p.VDUs {
			for _, n := range v.Nodes {
				for _, st := range n.Steps {
					steps++
					k := p.Name + "/" + n.Name + "/" + strconv.Itoa(st.Index)
					if printed[k] || !stepEnded(st.State) {
						continue
					}
					printed[k] = true
					fmt.Fprintf(a.out, "%-28s step %-2d %-9s %7s  %s\n", p.Name+"/"+n.Name, st.Index, st.State,
						duration(st.DurationMS, st.State), oneLine(st.Step, 70))
					if st.State == "failed" {
						a.printFailure(st)
					}
				}
			}
		}
		if steps == 0 && p.State == "failed" && !printed[p.Name] {
			printed[p.Name] = true
			fmt.Fprintf(a.out, "%-28s failed: %s\n", p.Name, p.Message)
		}
	}
}

// printFailure shows why a step failed: its error and the end of its output.
func (a *app) printFailure(st v1.Step) {
	if st.Error != "" {
		fmt.Fprintf(a.out, "    %s\n", st.Error)
	}
	for _, out := range []struct{ name, text string }{{"stderr", st.Stderr}, {"stdout", st.Stdout}} {
		lines := lastLines(out.text, 10)
		if len(lines) == 0 {
			continue
		}
		fmt.Fprintf(a.out, "    %s:\n", out.name)
		for _, l := range lines {
			fmt.Fprintf(a.out, "    | %s\n", l)
		}
	}
}

func stepEnded(state string) bool {
	return state == "succeeded" || state == "failed" || state == "skipped"
}

func duration(ms int64, state string) string {
	if state == "skipped" || state == "pending" {
		return ""
	}
	return (time.Duration(ms) * time.Millisecond).Round(10 * time.Millisecond).String()
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-3] + "..."
	}
	return s
}

func lastLines(s string, n int) []string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return nil
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func newServiceGet(a *app) *cobra.Command {
	var logs bool
	cmd := &cobra.Command{
		Use:   "get SLICE SERVICE",
		Short: "Show a service: its parts, VDUs, nodes and steps",
		Long: `Show a service's last deployment: per part, VDU and node, each step's state, exit code,
time and command, then the output of the failed steps (of every step with --logs).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			sl, err := resolveSlice(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			s, err := c.GetService(cmd.Context(), sl.ID, args[1])
			if err != nil {
				return err
			}
			if err := a.print(s, func(w io.Writer) { serviceTable(w, s) }); err != nil {
				return err
			}
			if a.output == "table" {
				a.printOutputs(s, logs)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&logs, "logs", false, "print the output of every step, not only of failed ones")
	return cmd
}

// serviceTable shows a service: a summary, then one row per step.
func serviceTable(w io.Writer, s *v1.Service) {
	row(w, "ID:", s.ID)
	row(w, "Slice:", s.SliceID)
	row(w, "State:", s.State)
	if s.Message != "" {
		row(w, "Message:", s.Message)
	}
	row(w, "Deployment:", s.Generation)
	row(w, "Started:", when(&s.StartedAt))
	if s.FinishedAt != nil {
		row(w, "Finished:", when(s.FinishedAt))
	}
	if len(s.Policies) > 0 {
		row(w, "Policies:", strings.Join(s.Policies, ", "))
	}
	for _, warn := range s.Warnings {
		row(w, "Warning:", warn)
	}
	c := s.Counts
	row(w, "Steps:", fmt.Sprintf("%d: %d succeeded, %d failed, %d skipped, %d running, %d pending",
		c.Total, c.Succeeded, c.Failed, c.Skipped, c.Running, c.Pending))
	fmt.Fprintln(w)
	row(w, "PART", "VDU", "NODE", "STEP", "STATE", "EXIT", "TIME", "COMMAND")
	for _, p := range s.Parts {
		if len(p.VDUs) == 0 {
			row(w, p.Name, "", "", "", p.State, "", "", p.Message)
		}
		for _, v := range p.VDUs {
			for _, n := range v.Nodes {
				for _, st := range n.Steps {
					exit := ""
					if stepEnded(st.State) && st.State != "skipped" {
						exit = strconv.Itoa(st.ExitCode)
					}
					row(w, p.Name, v.Name, n.Name, st.Index, st.State, exit, duration(st.DurationMS, st.State), oneLine(st.Step, 60))
				}
			}
		}
	}
}

// printOutputs prints the output of failed steps, or of all steps.
func (a *app) printOutputs(s *v1.Service, all bool) {
	for _, p := range s.Parts {
		if p.State == "failed" && len(p.VDUs) == 0 {
			fmt.Fprintf(a.out, "\n%s failed: %s\n", p.Name, p.Message)
		}
		for _, v := range p.VDUs {
			for _, n := range v.Nodes {
				for _, st := range n.Steps {
					if !all && st.State != "failed" {
						continue
					}
					if st.Stdout == "" && st.Stderr == "" && st.Error == "" {
						continue
					}
					fmt.Fprintf(a.out, "\n--- %s/%s step %d %s: %s\n", p.Name, n.Name, st.Index, st.State, oneLine(st.Step, 80))
					if st.Error != "" {
						fmt.Fprintf(a.out, "error: %s\n", st.Error)
					}
					if st.Stdout != "" {
						fmt.Fprintf(a.out, "stdout:\n%s\n", strings.TrimRight(st.Stdout, "\n"))
					}
					if st.Stderr != "" {
						fmt.Fprintf(a.out, "stderr:\n%s\n", strings.TrimRight(st.Stderr, "\n"))
					}
				}
			}
		}
	}
}

func newServiceList(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "list SLICE",
		Aliases: []string{"ls"},
		Short:   "List a slice's services",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			sl, err := resolveSlice(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			l, err := c.ListServices(cmd.Context(), sl.ID)
			if err != nil {
				return err
			}
			return a.print(v1.ServiceList{Services: l}, func(w io.Writer) {
				row(w, "ID", "STATE", "DEPLOYMENT", "STEPS OK", "PARTS", "STARTED", "FINISHED", "MESSAGE")
				for _, s := range l {
					row(w, s.ID, s.State, s.Generation, fmt.Sprintf("%d/%d", s.Counts.Succeeded, s.Counts.Total), len(s.Parts),
						when(&s.StartedAt), when(s.FinishedAt), oneLine(s.Message, 80))
				}
			})
		},
	}
}

func newServiceDelete(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "delete SLICE SERVICE",
		Aliases: []string{"rm", "undeploy"},
		Short:   "Undeploy a service: remove what it applied and its elasticity policies",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			sl, err := resolveSlice(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			if err := c.DeleteService(cmd.Context(), sl.ID, args[1]); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "service %s undeployed from slice %s\n", args[1], sl.ID)
			return nil
		},
	}
}
