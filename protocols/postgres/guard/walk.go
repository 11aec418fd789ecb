package guard

import (
	"encoding/json"
	"fmt"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// walker classifies one top-level statement.
type walker struct {
	c     *Classifier
	stmt  int
	depth int
	// version is the parse tree's, for deparsing function definitions.
	version int32
	// names are the protected tables the walk saw, in order.
	names []string
	found []Finding
	err   error
}

func (w *walker) add(r Rule, detail string, estimate bool) {
	for _, f := range w.found {
		if f.Rule == r && f.Detail == detail && f.NeedsEstimate == estimate {
			return
		}
	}
	w.found = append(w.found, Finding{Rule: r, Stmt: w.stmt, Detail: detail, NeedsEstimate: estimate})
}

// top classifies a top-level statement: every node in it, then the rules
// that depend on what the statement as a whole is (utility or not, LIMIT)
// and the protected tables the walk saw.
func (w *walker) top(n *pg.Node) {
	w.visit(n.ProtoReflect())
	if len(w.names) == 0 {
		return
	}
	switch s := n.Node.(type) {
	case *pg.Node_SelectStmt:
		if s.SelectStmt.LimitCount == nil {
			w.add(BulkExport, w.names[0], true)
		}
	case *pg.Node_CreateTableAsStmt, *pg.Node_DeclareCursorStmt:
		w.add(BulkExport, w.names[0], false)
	case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt,
		*pg.Node_CopyStmt, *pg.Node_ExplainStmt, *pg.Node_TransactionStmt, *pg.Node_VariableSetStmt,
		*pg.Node_VariableShowStmt, *pg.Node_ExecuteStmt, *pg.Node_PrepareStmt, *pg.Node_DeallocateStmt,
		*pg.Node_FetchStmt, *pg.Node_ClosePortalStmt, *pg.Node_DoStmt, *pg.Node_CallStmt,
		*pg.Node_ListenStmt, *pg.Node_NotifyStmt, *pg.Node_UnlistenStmt, *pg.Node_DiscardStmt,
		*pg.Node_LockStmt, *pg.Node_VacuumStmt, *pg.Node_CheckPointStmt:
	default:
		// Utility statement (DDL, GRANT, COMMENT, ...): naming a protected
		// table is a rule of its own.
		for _, t := range w.names {
			w.add(ProtectedDDL, t, false)
		}
	}
}

// visit checks one node and recurses into all of its children.
func (w *walker) visit(m protoreflect.Message) {
	if w.err != nil || !m.IsValid() {
		return
	}
	w.check(m.Interface())
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				w.visit(l.Get(i).Message())
			}
		case fd.Message() != nil && !fd.IsMap():
			w.visit(v.Message())
		}
		return w.err == nil
	})
}

// check applies the node-level rules.
func (w *walker) check(x any) {
	switch s := x.(type) {
	case *pg.RangeVar:
		w.saw(w.match(s))
	case *pg.List:
		if rv := listRangeVar(s); rv != nil {
			w.saw(w.match(rv))
		}
	case *pg.DropStmt:
		w.add(Drop, strings.ToLower(strings.TrimPrefix(s.RemoveType.String(), "OBJECT_")), false)
	case *pg.DropdbStmt:
		w.add(Drop, "database "+s.Dbname, false)
	case *pg.DropRoleStmt:
		w.add(Drop, "role", false)
	case *pg.DropTableSpaceStmt:
		w.add(Drop, "tablespace "+s.Tablespacename, false)
	case *pg.DropOwnedStmt:
		w.add(Drop, "owned", false)
	case *pg.DropSubscriptionStmt:
		w.add(Drop, "subscription "+s.Subname, false)
	case *pg.DropUserMappingStmt:
		w.add(Drop, "user mapping", false)
	case *pg.TruncateStmt:
		w.add(Truncate, relNames(s.Relations), false)
	case *pg.AlterOwnerStmt:
		w.add(AlterOwner, strings.ToLower(strings.TrimPrefix(s.ObjectType.String(), "OBJECT_")), false)
	case *pg.ReassignOwnedStmt:
		w.add(AlterOwner, "reassign owned", false)
	case *pg.AlterTableCmd:
		if s.Subtype == pg.AlterTableType_AT_ChangeOwner {
			w.add(AlterOwner, "table", false)
		}
	case *pg.CopyStmt:
		w.copyStmt(s)
	case *pg.VariableSetStmt:
		switch strings.ToLower(s.Name) {
		case "role", "session_authorization":
			if s.Kind != pg.VariableSetKind_VAR_RESET && s.Kind != pg.VariableSetKind_VAR_SET_DEFAULT {
				w.add(SetRole, "set "+strings.ToLower(s.Name), false)
			}
		}
	case *pg.FuncCall:
		w.funcCall(s)
	case *pg.UpdateStmt:
		if s.WhereClause == nil {
			w.add(UpdateWithoutWhere, relName(s.Relation), false)
		}
	case *pg.DeleteStmt:
		if s.WhereClause == nil {
			w.add(DeleteWithoutWhere, relName(s.Relation), false)
		}
	case *pg.DoStmt:
		body, lang := codeOptions(s.Args)
		if lang == "" {
			lang = "plpgsql"
		}
		w.code(lang, body, func(tag string) string {
			return "CREATE FUNCTION custos_guard_do() RETURNS void LANGUAGE plpgsql AS " + tag + body + tag
		})
	case *pg.CreateFunctionStmt:
		if s.SqlBody != nil {
			return // BEGIN ATOMIC bodies are parse trees: visited as children
		}
		body, lang := codeOptions(s.Options)
		w.code(lang, body, func(string) string {
			out, err := pg.Deparse(&pg.ParseResult{Version: w.version, Stmts: []*pg.RawStmt{{Stmt: &pg.Node{Node: &pg.Node_CreateFunctionStmt{CreateFunctionStmt: s}}}}})
			if err != nil {
				return ""
			}
			return out
		})
	}
}

func (w *walker) copyStmt(s *pg.CopyStmt) {
	if s.IsProgram {
		w.add(CopyProgram, "program", false)
	}
	if s.IsFrom {
		return
	}
	if s.Relation != nil {
		if t := w.match(s.Relation); t != "" {
			w.add(BulkExport, t, false)
		}
	}
	if s.Query != nil {
		if t := w.firstProtected(s.Query); t != "" {
			w.add(BulkExport, t, false)
		}
	}
}

// funcCall catches set_config('role' | 'session_authorization', ...), and
// set_config with a setting name that is not a constant.
func (w *walker) funcCall(f *pg.FuncCall) {
	if len(f.Funcname) == 0 {
		return
	}
	name := f.Funcname[len(f.Funcname)-1].GetString_().GetSval()
	if !strings.EqualFold(name, "set_config") || len(f.Args) == 0 {
		return
	}
	c := f.Args[0].GetAConst()
	if c == nil || c.GetSval() == nil {
		w.add(SetRole, "set_config (setting not a constant)", false)
		return
	}
	switch strings.ToLower(c.GetSval().GetSval()) {
	case "role", "session_authorization":
		w.add(SetRole, "set_config "+strings.ToLower(c.GetSval().GetSval()), false)
	}
}

// codeOptions returns the AS body and LANGUAGE of a DO or CREATE FUNCTION.
func codeOptions(opts []*pg.Node) (body, lang string) {
	for _, o := range opts {
		d := o.GetDefElem()
		if d == nil || d.Arg == nil {
			continue
		}
		switch d.Defname {
		case "as":
			if s := d.Arg.GetString_(); s != nil {
				body = s.Sval
			} else if l := d.Arg.GetList(); l != nil && len(l.Items) > 0 {
				body = l.Items[0].GetString_().GetSval()
			}
		case "language":
			lang = strings.ToLower(d.Arg.GetString_().GetSval())
		}
	}
	return body, lang
}

// code classifies the body of a DO block or function. SQL bodies are
// classified as statements; PL/pgSQL bodies through PostgreSQL's PL/pgSQL
// grammar, statement by statement; other languages are opaque.
func (w *walker) code(lang, body string, plpgsql func(tag string) string) {
	if strings.TrimSpace(body) == "" {
		// No body: PostgreSQL refuses the statement ("no function body
		// specified"); there is nothing to run. (PL/pgSQL parsing of an
		// empty body aborts the parser library, so it must not be tried.)
		return
	}
	if w.depth >= maxDepth {
		w.err = fmt.Errorf("%w: code nested deeper than %d levels", ErrUnparsed, maxDepth)
		return
	}
	switch lang {
	case "sql":
		w.nested(body, false)
	case "plpgsql":
		tag := "$custos_guard$"
		for i := 0; strings.Contains(body, tag); i++ {
			tag = fmt.Sprintf("$custos_guard%d$", i)
		}
		src := plpgsql(tag)
		if src == "" {
			w.err = fmt.Errorf("%w: function not deparsed", ErrUnparsed)
			return
		}
		out, err := pg.ParsePlPgSqlToJSON(src)
		if err != nil {
			w.err = fmt.Errorf("%w: pl/pgsql: %v", ErrUnparsed, err)
			return
		}
		var tree any
		if err := json.Unmarshal([]byte(out), &tree); err != nil {
			w.err = fmt.Errorf("%w: pl/pgsql tree: %v", ErrUnparsed, err)
			return
		}
		w.plpgsql(tree)
	case "c", "internal":
		// A C or internal function binds existing code; creating one needs
		// superuser. Nothing to read.
	default:
		w.add(OpaqueCode, "language "+lang, false)
	}
}

// plpgsql walks a PL/pgSQL tree: every embedded query is classified as a
// statement (or as an expression); statements built at run time are
// DynamicSQL.
func (w *walker) plpgsql(v any) {
	switch t := v.(type) {
	case map[string]any:
		for k, c := range t {
			if strings.HasPrefix(k, "PLpgSQL_stmt_dyn") || k == "dynquery" {
				w.add(DynamicSQL, strings.TrimPrefix(k, "PLpgSQL_stmt_"), false)
			}
			if k == "PLpgSQL_expr" {
				if e, ok := c.(map[string]any); ok {
					if q, ok := e["query"].(string); ok {
						w.nested(q, true)
					}
				}
			}
			w.plpgsql(c)
			if w.err != nil {
				return
			}
		}
	case []any:
		for _, c := range t {
			w.plpgsql(c)
		}
	}
}

// nested classifies SQL embedded in code; findings count for the
// enclosing top-level statement. A PL/pgSQL expression ("x > 1") parses as
// "SELECT x > 1".
func (w *walker) nested(sql string, expr bool) {
	tree, err := pg.Parse(sql)
	if err != nil && expr {
		tree, err = pg.Parse("SELECT " + sql)
	}
	if err != nil {
		w.err = fmt.Errorf("%w: function body: %v", ErrUnparsed, err)
		return
	}
	for _, raw := range tree.Stmts {
		if raw.Stmt == nil {
			continue
		}
		sub := walker{c: w.c, stmt: w.stmt, depth: w.depth + 1, version: tree.Version}
		sub.top(raw.Stmt)
		if sub.err != nil {
			w.err = sub.err
			return
		}
		for _, f := range sub.found {
			w.add(f.Rule, f.Detail, f.NeedsEstimate)
		}
	}
}

// saw notes a protected table named in the statement.
func (w *walker) saw(name string) {
	if name != "" && !contains(w.names, name) {
		w.names = append(w.names, name)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// match returns the protected name rv refers to, or "". An unqualified
// name matches a protected table of that name in any schema (the search
// path is the session's).
func (w *walker) match(rv *pg.RangeVar) string {
	if rv == nil || (len(w.c.protected) == 0 && !w.c.all) {
		return ""
	}
	// The parser folded unquoted names; a quoted "Subjects" is another table.
	rel := rv.Relname
	if w.c.all {
		if rv.Schemaname != "" {
			return rv.Schemaname + "." + rel
		}
		return rel
	}
	if rv.Schemaname != "" {
		q := rv.Schemaname + "." + rel
		if w.c.protected[q] || w.c.protected[rel] {
			return q
		}
		return ""
	}
	if w.c.protected[rel] {
		return rel
	}
	return w.c.bare[rel]
}

// firstProtected returns the first protected table named anywhere in n.
func (w *walker) firstProtected(n *pg.Node) string {
	if names := w.protectedNames(n); len(names) > 0 {
		return names[0]
	}
	return ""
}

// protectedNames lists the protected tables named in n: RangeVars, and the
// dotted name lists DROP, COMMENT and friends use.
func (w *walker) protectedNames(n *pg.Node) []string {
	if n == nil || (len(w.c.protected) == 0 && !w.c.all) {
		return nil
	}
	var out []string
	var rec func(m protoreflect.Message)
	rec = func(m protoreflect.Message) {
		if !m.IsValid() {
			return
		}
		switch x := m.Interface().(type) {
		case *pg.RangeVar:
			if t := w.match(x); t != "" {
				out = append(out, t)
			}
		case *pg.List:
			if rv := listRangeVar(x); rv != nil {
				if t := w.match(rv); t != "" {
					out = append(out, t)
				}
			}
		}
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				l := v.List()
				for i := 0; i < l.Len(); i++ {
					rec(l.Get(i).Message())
				}
			case fd.Message() != nil && !fd.IsMap():
				rec(v.Message())
			}
			return true
		})
	}
	rec(n.ProtoReflect())
	return out
}

// listRangeVar reads a list of one to three String nodes as a name.
func listRangeVar(l *pg.List) *pg.RangeVar {
	if len(l.Items) == 0 || len(l.Items) > 3 {
		return nil
	}
	parts := make([]string, 0, 3)
	for _, it := range l.Items {
		s := it.GetString_()
		if s == nil {
			return nil
		}
		parts = append(parts, s.Sval)
	}
	rv := &pg.RangeVar{Relname: parts[len(parts)-1]}
	if len(parts) >= 2 {
		rv.Schemaname = parts[len(parts)-2]
	}
	return rv
}

func relName(rv *pg.RangeVar) string {
	if rv == nil {
		return ""
	}
	if rv.Schemaname != "" {
		return rv.Schemaname + "." + rv.Relname
	}
	return rv.Relname
}

func relNames(nodes []*pg.Node) string {
	var names []string
	for _, n := range nodes {
		names = append(names, relName(n.GetRangeVar()))
	}
	return strings.Join(names, ",")
}
