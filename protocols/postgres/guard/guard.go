// Package guard classifies PostgreSQL statements for the proxy's statement
// guardrails. It parses with PostgreSQL's own grammar (pg_query), walks the
// whole parse tree of every statement (CTEs, subqueries, PREPARE bodies,
// rule actions, SQL function bodies and the statements of PL/pgSQL code in
// DO blocks and CREATE FUNCTION) and reports which rules a statement
// touches. It is pure: no I/O, no configuration beyond the protected tables.
package guard

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Rule names a built-in guardrail. The names are the keys of a role's
// guardrails.rules in the configuration.
type Rule string

// The built-in rules.
const (
	// Drop is any DROP (tables, schemas, databases, roles, functions,
	// DROP OWNED ...).
	Drop Rule = "drop"
	// Truncate is TRUNCATE.
	Truncate Rule = "truncate"
	// AlterOwner is ALTER ... OWNER TO and REASSIGN OWNED.
	AlterOwner Rule = "alter_owner"
	// CopyProgram is COPY ... TO/FROM PROGRAM (runs a shell command on the
	// database server).
	CopyProgram Rule = "copy_program"
	// SetRole is SET ROLE, SET SESSION AUTHORIZATION and set_config('role'
	// or 'session_authorization', ...).
	SetRole Rule = "set_role"
	// UpdateWithoutWhere is UPDATE without a WHERE clause.
	UpdateWithoutWhere Rule = "update_without_where"
	// DeleteWithoutWhere is DELETE without a WHERE clause.
	DeleteWithoutWhere Rule = "delete_without_where"
	// ProtectedDDL is a utility statement (ALTER, DROP, TRUNCATE, CREATE
	// TRIGGER/RULE/POLICY/INDEX on, GRANT, COMMENT, ...) naming a protected
	// table.
	ProtectedDDL Rule = "protected_ddl"
	// BulkExport is COPY ... TO of a protected table (or of a query reading
	// one), or a SELECT without LIMIT reading a protected table: the latter
	// only counts when the planner's row estimate exceeds the role's
	// threshold (Finding.NeedsEstimate).
	BulkExport Rule = "bulk_export"
	// DynamicSQL is code whose statements are built at run time (EXECUTE
	// of a string in PL/pgSQL): it cannot be classified before it runs.
	DynamicSQL Rule = "dynamic_sql"
	// OpaqueCode is a DO block or function in a language other than SQL
	// and PL/pgSQL, whose body the classifier cannot read.
	OpaqueCode Rule = "opaque_code"
)

// Rules lists every built-in rule in a stable order.
var Rules = []Rule{Drop, Truncate, AlterOwner, CopyProgram, SetRole, UpdateWithoutWhere,
	DeleteWithoutWhere, ProtectedDDL, BulkExport, DynamicSQL, OpaqueCode}

// Finding is one rule a statement touches.
type Finding struct {
	Rule Rule
	// Stmt is the index of the top-level statement in the input.
	Stmt int
	// Detail names the object or construct, e.g. "public.subjects".
	Detail string
	// NeedsEstimate is set for a SELECT without LIMIT on a protected table:
	// the rule applies only when the planner's estimate exceeds the role's
	// bulk-export threshold.
	NeedsEstimate bool
}

// Statement is one top-level statement of the input.
type Statement struct {
	// Text is the statement's own text (without the separator).
	Text string
	// Tag is the node type, e.g. "DeleteStmt".
	Tag string
	// Explainable reports whether EXPLAIN accepts the statement (SELECT,
	// INSERT, UPDATE, DELETE, MERGE, VALUES).
	Explainable bool
	// Prepares is the name a PREPARE statement defines; Executes the
	// name an EXECUTE (also inside EXPLAIN or CREATE TABLE AS) runs.
	Prepares, Executes string
}

// Result is the classification of one input (a simple Query message, which
// may hold several statements, or a Parse message's single statement).
type Result struct {
	Statements []Statement
	Findings   []Finding
}

// Has reports whether r has a finding for rule.
func (r *Result) Has(rule Rule) bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Rule == rule })
}

// ErrUnparsed wraps every parse failure: the role's unparsed setting
// decides what happens to such input.
var ErrUnparsed = errors.New("guard: statement not parsed")

// maxDepth bounds the nesting of function bodies classified inside one
// another (a DO block creating a function whose body holds a DO ...).
const maxDepth = 8

// Classifier classifies statements against a set of protected tables.
// The zero value protects no tables. It is safe for concurrent use.
type Classifier struct {
	// protected holds "schema.table" and "table" keys: lower case from
	// New, as the catalog spells them from WithTables.
	protected map[string]bool
	// bare maps a table name to the first (sorted) "schema.table" key of
	// that name: an unqualified name in a statement matches it.
	bare map[string]string
	// all treats every table as protected (AllTables).
	all bool
}

// index fills bare from protected.
func (c *Classifier) index() *Classifier {
	c.bare = map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(c.protected)) {
		if _, t, ok := strings.Cut(k, "."); ok {
			if _, dup := c.bare[t]; !dup {
				c.bare[t] = k
			}
		}
	}
	return c
}

// WithTables returns a copy of c that also protects tables given as
// "schema.table" exactly as the catalog names them (not folded): the
// tables the data dictionary classifies columns of.
func (c *Classifier) WithTables(tables []string) *Classifier {
	out := &Classifier{protected: make(map[string]bool, len(c.protected)+len(tables)), all: c.all}
	for k := range c.protected {
		out.protected[k] = true
	}
	for _, t := range tables {
		out.protected[t] = true
	}
	return out.index()
}

// AllTables returns a copy of c that treats every table as protected: the
// fail-closed classifier when the tables with classified columns cannot
// be known.
func (c *Classifier) AllTables() *Classifier {
	out := c.WithTables(nil)
	out.all = true
	return out
}

// New returns a classifier for the protected tables, given as "table" or
// "schema.table" (unquoted; compared as PostgreSQL folds unquoted names).
func New(protected []string) *Classifier {
	c := &Classifier{protected: map[string]bool{}}
	for _, t := range protected {
		c.protected[strings.ToLower(strings.TrimSpace(t))] = true
	}
	return c.index()
}

// Classify parses sql and reports its statements and findings. A parse
// failure returns an error wrapping ErrUnparsed.
func (c *Classifier) Classify(sql string) (*Result, error) {
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnparsed, err)
	}
	res := &Result{}
	for i, raw := range tree.Stmts {
		st := Statement{Text: stmtText(sql, raw)}
		if raw.Stmt != nil {
			st.Tag = string(raw.Stmt.ProtoReflect().WhichOneof(nodeOneof(raw.Stmt)).Message().FullName().Name())
			st.Explainable = explainable(raw.Stmt)
			st.Prepares, st.Executes = prepareNames(raw.Stmt)
		}
		res.Statements = append(res.Statements, st)
		w := walker{c: c, stmt: i, version: tree.Version}
		if raw.Stmt != nil {
			w.top(raw.Stmt)
		}
		if w.err != nil {
			return nil, w.err
		}
		res.Findings = append(res.Findings, w.found...)
	}
	return res, nil
}

// stmtText cuts a statement out of its input. StmtLen 0 means "to the end".
func stmtText(sql string, raw *pg.RawStmt) string {
	b := []byte(sql) // locations are byte offsets
	start := min(int(raw.StmtLocation), len(b))
	end := len(b)
	if raw.StmtLen > 0 {
		end = min(start+int(raw.StmtLen), len(b))
	}
	return strings.TrimSpace(string(b[start:end]))
}

func nodeOneof(n *pg.Node) protoreflect.OneofDescriptor {
	return n.ProtoReflect().Descriptor().Oneofs().Get(0)
}

// prepareNames reads the name of a PREPARE, or of the prepared
// statement an EXECUTE runs (directly, under EXPLAIN or CREATE TABLE AS).
func prepareNames(n *pg.Node) (prepares, executes string) {
	switch s := n.Node.(type) {
	case *pg.Node_PrepareStmt:
		return s.PrepareStmt.Name, ""
	case *pg.Node_ExecuteStmt:
		return "", s.ExecuteStmt.Name
	case *pg.Node_ExplainStmt:
		if s.ExplainStmt.Query != nil {
			return prepareNames(s.ExplainStmt.Query)
		}
	case *pg.Node_CreateTableAsStmt:
		if s.CreateTableAsStmt.Query != nil {
			return prepareNames(s.CreateTableAsStmt.Query)
		}
	}
	return "", ""
}

func explainable(n *pg.Node) bool {
	switch n.Node.(type) {
	case *pg.Node_SelectStmt, *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt:
		return true
	}
	return false
}
