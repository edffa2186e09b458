package main

import (
	"fmt"
	"io"
	"sort"
	"strings"

	v1 "github.com/necos/necos/api/v1"
	"github.com/necos/necos/core/pluginhost"
	"github.com/spf13/cobra"
)

func newProvidersCommand(a *app) *cobra.Command {
	return &cobra.Command{
		Use:     "providers",
		Aliases: []string{"provider"},
		Short:   "List the federation's resource providers and what they offer",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.Providers(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(v1.ProviderList{Providers: l}, func(w io.Writer) {
				row(w, "NAME", "LOCATION", "OFFERS", "SITE UNDERLAY", "CONTROLLER ID")
				ids := false
				for _, p := range l {
					var site string
					if p.Site != nil {
						site = p.Site.Underlay
					}
					ids = ids || p.Controller != nil
					row(w, p.Name, p.Location, offers(p.Offers), site, addr(p.Controller))
				}
				// Neither column is an address to open: say so, rather than have a newcomer
				// try them.
				fmt.Fprintln(w, "\nSITE UNDERLAY: where the WAN's links to the provider end, inside the site's network")
				fmt.Fprintln(w, "namespace (not reachable from the host; necosctl slice port-forward|ssh reach the nodes).")
				if ids {
					fmt.Fprintln(w, "CONTROLLER ID: the original NECOS controller endpoint, kept as the provider's id in")
					fmt.Fprintln(w, "NECOS answers; nothing listens there. The API of every provider is necosd's.")
				}
			})
		},
	}
}

// offers describes offers on one line: "dc xen-vim [DC,EDGE] (vim-xen)".
func offers(os []v1.Offer) string {
	var parts []string
	for _, o := range os {
		s := o.Kind
		switch o.Kind {
		case "dc":
			s += " " + o.VIM
			if len(o.PartTypes) > 0 {
				s += " [" + strings.Join(o.PartTypes, ",") + "]"
			}
		case "wan":
			s += " " + o.WIM
			if len(o.Sites) > 0 {
				s += " [" + strings.Join(o.Sites, ",") + "]"
			}
		}
		parts = append(parts, s+" ("+o.Plugin+")")
	}
	return strings.Join(parts, "; ")
}

func newPluginsCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "plugins",
		Aliases: []string{"plugin"},
		Short:   "List running plugin instances, or lock plugin binaries",
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the plugin instances serving the providers",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			l, err := c.Plugins(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(v1.PluginList{Plugins: l}, func(w io.Writer) {
				row(w, "NAME", "PLUGIN", "VERSION", "KINDS", "STATE", "PID", "RESTARTS", "STARTED", "LAST ERROR")
				for _, p := range l {
					pid := ""
					if p.Pid != 0 {
						pid = fmt.Sprint(p.Pid)
					}
					row(w, p.Name, p.Plugin, p.Version, strings.Join(p.Kinds, ","), p.State, pid, p.Restarts,
						when(&p.Started), p.LastError)
				}
				refusedHint(w, l)
			})
		},
	}, newPluginsLock(a))
	return cmd
}

// refusedHint tells what to do about refused plugin instances: a binary not locked, or
// changed since, is locked again once trusted; a missing one is built.
func refusedHint(w io.Writer, l []v1.Plugin) {
	var refused []string
	seen := map[string]bool{}
	for _, p := range l {
		if p.State == string(pluginhost.StateRefused) && !seen[p.Plugin] {
			refused, seen[p.Plugin] = append(refused, p.Plugin), true
		}
	}
	if len(refused) == 0 {
		return
	}
	sort.Strings(refused)
	fmt.Fprintf(w, "\n%d plugin(s) refused (see LAST ERROR). A binary not in the lock file or changed since: if\n", len(refused))
	fmt.Fprintf(w, "you trust it, on necosd's machine run: necosctl plugins lock --dir bin/plugins %s\n", strings.Join(refused, " "))
	fmt.Fprintln(w, "(--dir: necosd's --plugin-dir). A missing binary: build it (make build). necosd tries a")
	fmt.Fprintln(w, "refused plugin again at its provider's next use; /readyz names those not serving.")
}

func newPluginsLock(a *app) *cobra.Command {
	var dir, lockFile string
	cmd := &cobra.Command{
		Use:   "lock [NAME...]",
		Short: "Record the SHA-256 of plugin binaries in the lock file (locally)",
		Long: `Record the SHA-256 of the plugin binaries (necos-plugin-<name>) of the plugin
directory in its lock file: necosd runs no binary the lock file does not list with its
hash. Without names every binary is locked and entries of removed binaries are dropped;
with names only those are (re)locked. Runs locally: no server is needed.`,
		RunE: func(cmd *cobra.Command, names []string) error {
			host := pluginhost.New(pluginhost.Options{Dir: dir, LockFile: lockFile})
			changes, err := host.Lock(names...)
			if err != nil {
				return err
			}
			return a.print(changes, func(w io.Writer) {
				fmt.Fprintf(w, "lock file %s\n", host.LockFile())
				if len(changes) == 0 {
					fmt.Fprintln(w, "no plugin binaries found in", host.Dir())
					return
				}
				row(w, "PLUGIN", "CHANGE", "SHA256", "WAS")
				for _, c := range changes {
					sum := c.New
					if c.Change == pluginhost.LockRemoved {
						sum = ""
					}
					was := ""
					if c.Change == pluginhost.LockUpdated || c.Change == pluginhost.LockRemoved {
						was = short(c.Old)
					}
					row(w, c.Name, c.Change, short(sum), was)
				}
			})
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "bin/plugins", "plugin directory")
	cmd.Flags().StringVar(&lockFile, "lock-file", "", "lock file (default <dir>/"+pluginhost.DefaultLockFile+")")
	return cmd
}

// short abbreviates a SHA-256 for tables, as git does.
func short(sum string) string {
	if len(sum) > 16 {
		return sum[:16]
	}
	return sum
}

func newSitesCommand(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "sites",
		Aliases: []string{"site"},
		Short:   "Release the providers' site namespaces that no live slice uses",
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "release [SITE...]",
		Aliases: []string{"clean"},
		Short:   "Remove the site namespaces WAN plugins built that no live slice uses",
		Long: `Removes the network namespaces that the WAN plugins built for the providers' sites
(a one-machine federation: provision_sites) when no live slice uses them, and the
underlay namespace once no site is left on it. They are built again at their next use.
necosd does the same when it stops, unless started with --keep-sites.

SITE is a provider's name or a site's namespace; none means every site of the catalogue.
A site a live slice uses is kept and the slices named (delete them first); a namespace
holding something the plugin did not build is kept and its devices named. Exits 1 when a
site named on the command line was kept.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client()
			if err != nil {
				return err
			}
			res, err := c.ReleaseSites(cmd.Context(), args...)
			if err != nil {
				return err
			}
			if err := a.print(res, func(w io.Writer) {
				if len(res.Removed) == 0 {
					fmt.Fprintln(w, "removed no namespace")
				} else {
					fmt.Fprintf(w, "removed %s\n", strings.Join(res.Removed, ", "))
				}
				if len(res.Kept) > 0 {
					fmt.Fprintln(w)
					row(w, "KEPT SITE", "NAMESPACE", "WHY")
					for _, k := range res.Kept {
						row(w, k.Site, k.Netns, k.Reason)
					}
				}
			}); err != nil {
				return err
			}
			if len(args) > 0 && len(res.Kept) > 0 {
				return fmt.Errorf("%d of the sites named were kept (see WHY)", len(res.Kept))
			}
			return nil
		},
	})
	return cmd
}
