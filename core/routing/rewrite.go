package routing

import (
	"fmt"

	"github.com/d5/tengo/v2/parser"
	"github.com/d5/tengo/v2/token"
)

// A script is compiled from a rewritten syntax tree: every operation whose
// work or memory tengo does not bound becomes a call of a hidden guard (the
// "$" globals of builtins.go), placed where the operation was, so that
// runtime errors keep their file:line:col:
//
//	a + b            $add(a, b)      unless a is a number literal
//	a += b, a++      a = $add(a, b)  a's selectors are evaluated twice, as tengo does
//	a == b, a != b   $eq(a, b), $ne(a, b)   unless either side is a scalar literal
//	x[i]             $index(x, i)    unless i is a string literal
//	m[k] = v         m[$key(k)] = v  unless k is a literal
//	s[lo:hi]         $slice(s, lo, hi)
//	for k, v in x    for k, v in $iter(x)
//	[...], {...}     $lit([...]), $lit({...})   when not empty
//	func(a, ...r)    the body starts with $va(r)
//	import("text")   $text (likewise json, fmt, times)
//
// Before parsing, a scan of the tokens bounds how deep the parser recurses;
// the rewrite bounds how deep the compiler does.
const (
	maxNesting  = 100  // brackets, braces and parentheses inside each other
	maxUnaryRun = 32   // unary operators in a row
	maxChains   = 1000 // "else if" and "?" in a script: each nests a level
	maxASTDepth = 500  // syntax tree levels
)

// prescan checks the token stream of src for nesting that would make
// tengo's recursive parser go deep.
func prescan(name string, src []byte) error {
	fset := parser.NewFileSet()
	file := fset.AddFile(name, -1, len(src))
	sc := parser.NewScanner(file, src, nil, 0)
	fail := func(pos parser.Pos, msg string) error {
		p := file.Position(pos)
		return &CompileError{File: name, Line: p.Line, Column: p.Column, Msg: msg}
	}
	depth, run, chains := 0, 0, 0
	prev := token.Illegal
	for {
		tok, _, pos := sc.Scan()
		switch tok {
		case token.EOF:
			return nil
		case token.LParen, token.LBrack, token.LBrace:
			if depth++; depth > maxNesting {
				return fail(pos, fmt.Sprintf("nested more than %d levels deep", maxNesting))
			}
		case token.RParen, token.RBrack, token.RBrace:
			depth--
		case token.Question:
			chains++
		case token.If:
			if prev == token.Else {
				chains++
			}
		}
		if chains > maxChains {
			return fail(pos, fmt.Sprintf("more than %d \"else if\" and \"?\"", maxChains))
		}
		switch tok {
		case token.Not, token.Sub, token.Add, token.Xor:
			if run++; run > maxUnaryRun {
				return fail(pos, fmt.Sprintf("more than %d operators in a row", maxUnaryRun))
			}
		default:
			run = 0
		}
		prev = tok
	}
}

// rewriter rewrites a syntax tree; see above.
type rewriter struct {
	name string
	file *parser.SourceFile
	err  error
	mods map[int]bool // guarded modules the script imports
}

func rewrite(name string, file *parser.SourceFile, f *parser.File) ([]int, error) {
	r := &rewriter{name: name, file: file, mods: map[int]bool{}}
	for i, s := range f.Stmts {
		f.Stmts[i] = r.stmt(s, 0)
	}
	if r.err != nil {
		return nil, r.err
	}
	var mods []int
	for i := range numFixed {
		if r.mods[i] {
			mods = append(mods, i)
		}
	}
	return mods, nil
}

// deep reports, once, that the tree is too deep at n.
func (r *rewriter) deep(n parser.Node, d int) bool {
	if d <= maxASTDepth {
		return false
	}
	if r.err == nil {
		p := r.file.Position(n.Pos())
		r.err = &CompileError{File: r.name, Line: p.Line, Column: p.Column,
			Msg: fmt.Sprintf("expression nested more than %d levels deep", maxASTDepth)}
	}
	return true
}

// call is a call of the hidden guard name, placed at pos.
func call(name string, pos parser.Pos, args ...parser.Expr) *parser.CallExpr {
	return &parser.CallExpr{Func: &parser.Ident{Name: name, NamePos: pos}, LParen: pos, Args: args, RParen: pos}
}

func (r *rewriter) stmts(list []parser.Stmt, d int) []parser.Stmt {
	out := make([]parser.Stmt, len(list))
	for i, s := range list {
		out[i] = r.stmt(s, d)
	}
	return out
}

func (r *rewriter) block(b *parser.BlockStmt, d int) *parser.BlockStmt {
	if b == nil {
		return nil
	}
	return &parser.BlockStmt{Stmts: r.stmts(b.Stmts, d+1), LBrace: b.LBrace, RBrace: b.RBrace}
}

func (r *rewriter) stmt(s parser.Stmt, d int) parser.Stmt {
	if s == nil || r.deep(s, d) {
		return s
	}
	d++
	switch s := s.(type) {
	case *parser.AssignStmt:
		if s.Token == token.AddAssign && len(s.LHS) == 1 && len(s.RHS) == 1 {
			return &parser.AssignStmt{
				LHS:      []parser.Expr{r.target(s.LHS[0], d)},
				RHS:      []parser.Expr{call(fixedNames[fAdd], s.LHS[0].Pos(), r.expr(s.LHS[0], d), r.expr(s.RHS[0], d))},
				Token:    token.Assign,
				TokenPos: s.TokenPos,
			}
		}
		out := &parser.AssignStmt{Token: s.Token, TokenPos: s.TokenPos}
		for _, e := range s.LHS {
			out.LHS = append(out.LHS, r.target(e, d))
		}
		for _, e := range s.RHS {
			out.RHS = append(out.RHS, r.expr(e, d))
		}
		return out
	case *parser.IncDecStmt:
		if s.Token == token.Inc {
			one := &parser.IntLit{Value: 1, ValuePos: s.TokenPos, Literal: "1"}
			return &parser.AssignStmt{
				LHS:      []parser.Expr{r.target(s.Expr, d)},
				RHS:      []parser.Expr{call(fixedNames[fAdd], s.Expr.Pos(), r.expr(s.Expr, d), one)},
				Token:    token.Assign,
				TokenPos: s.TokenPos,
			}
		}
		return &parser.IncDecStmt{Expr: r.target(s.Expr, d), Token: s.Token, TokenPos: s.TokenPos}
	case *parser.BlockStmt:
		return r.block(s, d)
	case *parser.ExprStmt:
		return &parser.ExprStmt{Expr: r.expr(s.Expr, d)}
	case *parser.ForInStmt:
		it := r.expr(s.Iterable, d)
		return &parser.ForInStmt{ForPos: s.ForPos, Key: s.Key, Value: s.Value,
			Iterable: call(fixedNames[fIter], s.Iterable.Pos(), it), Body: r.block(s.Body, d)}
	case *parser.ForStmt:
		return &parser.ForStmt{ForPos: s.ForPos, Init: r.stmt(s.Init, d), Cond: r.expr(s.Cond, d),
			Post: r.stmt(s.Post, d), Body: r.block(s.Body, d)}
	case *parser.IfStmt:
		return &parser.IfStmt{IfPos: s.IfPos, Init: r.stmt(s.Init, d), Cond: r.expr(s.Cond, d),
			Body: r.block(s.Body, d), Else: r.stmt(s.Else, d)}
	case *parser.ReturnStmt:
		return &parser.ReturnStmt{ReturnPos: s.ReturnPos, Result: r.expr(s.Result, d)}
	case *parser.ExportStmt:
		return &parser.ExportStmt{ExportPos: s.ExportPos, Result: r.expr(s.Result, d)}
	}
	return s // branch, empty and bad statements
}

// target rewrites the left side of an assignment: its selectors are
// guarded like reads; the variable stays.
func (r *rewriter) target(e parser.Expr, d int) parser.Expr {
	if e == nil || r.deep(e, d) {
		return e
	}
	switch e := e.(type) {
	case *parser.IndexExpr:
		return &parser.IndexExpr{Expr: r.target(e.Expr, d+1), LBrack: e.LBrack, Index: r.key(e.Index, d+1), RBrack: e.RBrack}
	case *parser.SelectorExpr:
		return &parser.SelectorExpr{Expr: r.target(e.Expr, d+1), Sel: e.Sel}
	}
	return e
}

// key guards an index unless it is a literal.
func (r *rewriter) key(e parser.Expr, d int) parser.Expr {
	if e == nil || scalarLit(e) {
		return e
	}
	return call(fixedNames[fKey], e.Pos(), r.expr(e, d))
}

func numberLit(e parser.Expr) bool {
	switch e.(type) {
	case *parser.IntLit, *parser.FloatLit, *parser.CharLit:
		return true
	}
	return false
}

func scalarLit(e parser.Expr) bool {
	switch e.(type) {
	case *parser.IntLit, *parser.FloatLit, *parser.CharLit, *parser.StringLit, *parser.BoolLit, *parser.UndefinedLit:
		return true
	}
	return false
}

func (r *rewriter) exprs(list []parser.Expr, d int) []parser.Expr {
	if list == nil {
		return nil
	}
	out := make([]parser.Expr, len(list))
	for i, e := range list {
		out[i] = r.expr(e, d)
	}
	return out
}

func (r *rewriter) expr(e parser.Expr, d int) parser.Expr {
	if e == nil || r.deep(e, d) {
		return e
	}
	d++
	switch e := e.(type) {
	case *parser.BinaryExpr:
		lhs, rhs := r.expr(e.LHS, d), r.expr(e.RHS, d)
		switch {
		case e.Token == token.Add && !numberLit(e.LHS):
			return call(fixedNames[fAdd], e.LHS.Pos(), lhs, rhs)
		case e.Token == token.Equal && !scalarLit(e.LHS) && !scalarLit(e.RHS):
			return call(fixedNames[fEq], e.LHS.Pos(), lhs, rhs)
		case e.Token == token.NotEqual && !scalarLit(e.LHS) && !scalarLit(e.RHS):
			return call(fixedNames[fNe], e.LHS.Pos(), lhs, rhs)
		}
		return &parser.BinaryExpr{LHS: lhs, RHS: rhs, Token: e.Token, TokenPos: e.TokenPos}
	case *parser.ArrayLit:
		lit := &parser.ArrayLit{Elements: r.exprs(e.Elements, d), LBrack: e.LBrack, RBrack: e.RBrack}
		if len(lit.Elements) == 0 {
			return lit
		}
		return call(fixedNames[fLit], e.LBrack, lit)
	case *parser.MapLit:
		lit := &parser.MapLit{LBrace: e.LBrace, RBrace: e.RBrace}
		for _, el := range e.Elements {
			lit.Elements = append(lit.Elements, &parser.MapElementLit{Key: el.Key, KeyPos: el.KeyPos,
				ColonPos: el.ColonPos, Value: r.expr(el.Value, d)})
		}
		if len(lit.Elements) == 0 {
			return lit
		}
		return call(fixedNames[fLit], e.LBrace, lit)
	case *parser.CallExpr:
		return &parser.CallExpr{Func: r.expr(e.Func, d), LParen: e.LParen, Args: r.exprs(e.Args, d),
			Ellipsis: e.Ellipsis, RParen: e.RParen}
	case *parser.CondExpr:
		return &parser.CondExpr{Cond: r.expr(e.Cond, d), True: r.expr(e.True, d), False: r.expr(e.False, d),
			QuestionPos: e.QuestionPos, ColonPos: e.ColonPos}
	case *parser.ErrorExpr:
		return &parser.ErrorExpr{Expr: r.expr(e.Expr, d), ErrorPos: e.ErrorPos, LParen: e.LParen, RParen: e.RParen}
	case *parser.ImmutableExpr:
		return &parser.ImmutableExpr{Expr: r.expr(e.Expr, d), ErrorPos: e.ErrorPos, LParen: e.LParen, RParen: e.RParen}
	case *parser.FuncLit:
		body := r.block(e.Body, d)
		if params := e.Type.Params; params.VarArgs && len(params.List) > 0 && body != nil {
			rest := params.List[len(params.List)-1]
			va := &parser.ExprStmt{Expr: call(fixedNames[fVarArgs], rest.NamePos, &parser.Ident{Name: rest.Name, NamePos: rest.NamePos})}
			body.Stmts = append([]parser.Stmt{va}, body.Stmts...)
		}
		return &parser.FuncLit{Type: e.Type, Body: body}
	case *parser.ImportExpr:
		if i, ok := guardedModules[e.ModuleName]; ok {
			r.mods[i] = true
			return &parser.Ident{Name: fixedNames[i], NamePos: e.TokenPos}
		}
		return e
	case *parser.IndexExpr:
		if _, ok := e.Index.(*parser.StringLit); ok {
			return &parser.IndexExpr{Expr: r.expr(e.Expr, d), LBrack: e.LBrack, Index: e.Index, RBrack: e.RBrack}
		}
		return call(fixedNames[fIndex], e.Expr.Pos(), r.expr(e.Expr, d), r.expr(e.Index, d))
	case *parser.ParenExpr:
		return &parser.ParenExpr{Expr: r.expr(e.Expr, d), LParen: e.LParen, RParen: e.RParen}
	case *parser.SelectorExpr:
		return &parser.SelectorExpr{Expr: r.expr(e.Expr, d), Sel: e.Sel}
	case *parser.SliceExpr:
		bound := func(x parser.Expr) parser.Expr {
			if x == nil {
				return &parser.UndefinedLit{TokenPos: e.LBrack}
			}
			return r.expr(x, d)
		}
		return call(fixedNames[fSlice], e.Expr.Pos(), r.expr(e.Expr, d), bound(e.Low), bound(e.High))
	case *parser.UnaryExpr:
		return &parser.UnaryExpr{Expr: r.expr(e.Expr, d), Token: e.Token, TokenPos: e.TokenPos}
	}
	return e // literals, identifiers
}
