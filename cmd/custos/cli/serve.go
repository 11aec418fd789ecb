package cli

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/custos-pam/custos/broker/config"
	"github.com/custos-pam/custos/cmd/custos/app"
)

func newServeCmd(g *globals) *cobra.Command {
	var path, level string
	cmd := &cobra.Command{
		Use:     "serve",
		Short:   "Run the broker",
		Example: "  custos serve --config /etc/custos/custos.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(level)); err != nil {
				return &exitError{code: 2, msg: "serve: --log-level: " + err.Error()}
			}
			log := slog.New(slog.NewJSONHandler(g.stderr, &slog.HandlerOptions{Level: lvl}))
			cfg, err := config.Load(path)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// SIGHUP reads the config file again (systemctl reload).
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			return app.RunWithReload(ctx, cfg, path, hup, log)
		},
	}
	cmd.Flags().StringVar(&path, "config", os.Getenv("CUSTOS_CONFIG"), "config file (default $CUSTOS_CONFIG)")
	cmd.Flags().StringVar(&level, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}
