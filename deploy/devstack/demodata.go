package devstack

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// demoData is the demo target's clinical sample: a subjects table with
// the columns the dev config's data dictionary classifies, and visits
// keyed by subject_id to show that hashed IDs still join. Safe to run
// again.
const demoData = `
CREATE TABLE IF NOT EXISTS public.subjects (
  subject_id text PRIMARY KEY,
  dob date NOT NULL,
  name text NOT NULL,
  site text NOT NULL,
  allocation text NOT NULL
);
INSERT INTO public.subjects VALUES
  ('S-1001', '1961-04-12', 'Mary Jones', 'Leeds', 'active'),
  ('S-1002', '1975-09-30', 'Ahmed Khan', 'Leeds', 'placebo'),
  ('S-1003', '1983-01-05', 'Li Wei', 'Lyon', 'active'),
  ('S-1004', '1990-07-21', 'Ana Souza', 'Porto', 'placebo')
ON CONFLICT (subject_id) DO NOTHING;
CREATE TABLE IF NOT EXISTS public.visits (
  subject_id text NOT NULL REFERENCES public.subjects,
  visit int NOT NULL,
  visited_on date NOT NULL,
  PRIMARY KEY (subject_id, visit)
);
INSERT INTO public.visits VALUES
  ('S-1001', 1, '2026-01-10'), ('S-1001', 2, '2026-02-11'),
  ('S-1002', 1, '2026-01-12'), ('S-1003', 1, '2026-01-20'),
  ('S-1004', 1, '2026-02-02')
ON CONFLICT DO NOTHING;
`

// loadDemoData creates the demo tables in the target's postgres database.
func loadDemoData(pg *Postgres) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, demoData)
	return err
}
