package config

import "github.com/custos-pam/custos/broker/breakglass/schedule"

// Backup configures backups and restore drills.
type Backup struct {
	// RestoreDrill is when restore drills (custos drill restore) fall due;
	// they are listed with the break-glass drills. Default: quarterly.
	RestoreDrill RestoreDrill `yaml:"restore_drill"`
}

// RestoreDrill is a restore drill schedule, written as a break-glass
// drill schedule is.
type RestoreDrill struct {
	// Schedule is "quarterly", "monthly" or a five-field cron expression.
	// A drill is due at the first scheduled time after the last passed
	// restore drill (or after the audit log's first record). Default:
	// quarterly.
	Schedule string `yaml:"schedule"`
	// Weekday makes a quarterly or monthly drill due on the last such
	// weekday (mon..sun) of the period. Default: the period's last day.
	Weekday string `yaml:"weekday"`
	// At is the HH:MM the drill is due. Default: 10:00.
	At string `yaml:"at"`
	// TZ is the schedule's IANA time zone. Default: UTC.
	TZ string `yaml:"tz"`
}

// ScheduleSpec is the schedule as schedule.Parse takes it.
func (d RestoreDrill) ScheduleSpec() schedule.Spec {
	return schedule.Spec{Expr: d.Schedule, Weekday: d.Weekday, At: d.At, TZ: d.TZ}
}

func (c *Config) validateBackup(ck *checker) {
	if _, err := schedule.Parse(c.Backup.RestoreDrill.ScheduleSpec()); err != nil {
		ck.add("backup.restore_drill.schedule", "%v", err)
	}
}
