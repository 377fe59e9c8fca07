//! A key's value: an arithmetic expression of the frame number, folded
//! where it is constant and evaluated per frame.

/// An arithmetic expression of the frame.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Expr {
    /// A number (or a constant, or a folded subexpression).
    Number(f64),
    /// `t` or `max_f`.
    Var(Var),
    /// `-x`.
    Neg(Box<Expr>),
    /// `x op y op z …`, left to right: flat, so a long sum evaluates
    /// without deep recursion.
    Chain(Box<Expr>, Vec<(Op, Expr)>),
    /// `x ^ y`.
    Pow(Box<Expr>, Box<Expr>),
    /// A function of its arguments (their count checked at parse time).
    Call(Func, Vec<Expr>),
}

/// A variable of an expression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Var {
    /// The frame number.
    T,
    /// The last frame's number (frames - 1).
    MaxF,
}

/// A left-associative operator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Op {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
    /// `%`, floored as in Python: the result has the divisor's sign.
    Rem,
}

/// A function an expression may call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Func {
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Atan2,
    Abs,
    Sqrt,
    Exp,
    Ln,
    Log10,
    Floor,
    Ceil,
    Round,
    Min,
    Max,
    Clamp,
    Pow,
}

/// Every function: name, function and argument count.
pub(super) const FUNCTIONS: [(&str, Func, usize); 19] = [
    ("sin", Func::Sin, 1),
    ("cos", Func::Cos, 1),
    ("tan", Func::Tan, 1),
    ("asin", Func::Asin, 1),
    ("acos", Func::Acos, 1),
    ("atan", Func::Atan, 1),
    ("atan2", Func::Atan2, 2),
    ("abs", Func::Abs, 1),
    ("sqrt", Func::Sqrt, 1),
    ("exp", Func::Exp, 1),
    ("ln", Func::Ln, 1),
    ("log10", Func::Log10, 1),
    ("floor", Func::Floor, 1),
    ("ceil", Func::Ceil, 1),
    ("round", Func::Round, 1),
    ("min", Func::Min, 2),
    ("max", Func::Max, 2),
    ("clamp", Func::Clamp, 3),
    ("pow", Func::Pow, 2),
];

impl Func {
    /// The function of `a` (as many values as its argument count).
    pub(super) fn apply(self, a: &[f64]) -> f64 {
        match self {
            Func::Sin => a[0].sin(),
            Func::Cos => a[0].cos(),
            Func::Tan => a[0].tan(),
            Func::Asin => a[0].asin(),
            Func::Acos => a[0].acos(),
            Func::Atan => a[0].atan(),
            Func::Atan2 => a[0].atan2(a[1]),
            Func::Abs => a[0].abs(),
            Func::Sqrt => a[0].sqrt(),
            Func::Exp => a[0].exp(),
            Func::Ln => a[0].ln(),
            Func::Log10 => a[0].log10(),
            Func::Floor => a[0].floor(),
            Func::Ceil => a[0].ceil(),
            // Halves away from zero.
            Func::Round => a[0].round(),
            Func::Min => a[0].min(a[1]),
            Func::Max => a[0].max(a[1]),
            // Not f64::clamp, which panics when lo > hi.
            Func::Clamp => a[0].max(a[1]).min(a[2]),
            Func::Pow => a[0].powf(a[1]),
        }
    }
}

impl Expr {
    /// `first` alone, or the chain of it and `rest`.
    pub(super) fn chain(first: Expr, rest: Vec<(Op, Expr)>) -> Expr {
        if rest.is_empty() {
            first
        } else {
            Expr::Chain(Box::new(first), rest)
        }
    }

    /// The expression with no variable in it computed once, so a constant
    /// key costs nothing per frame (and [`Schedule::constant`] sees it).
    pub(super) fn folded(self) -> Expr {
        if self.uses(&|_| true) {
            self
        } else {
            Expr::Number(self.eval(0.0, 0.0))
        }
    }

    /// The value, if this is a number.
    pub(super) fn number(&self) -> Option<f64> {
        match self {
            Expr::Number(v) => Some(*v),
            _ => None,
        }
    }

    /// Whether `max_f` appears.
    pub(super) fn uses_max_f(&self) -> bool {
        self.uses(&|v| v == Var::MaxF)
    }

    /// Whether a variable passing `pick` appears.
    pub(super) fn uses(&self, pick: &dyn Fn(Var) -> bool) -> bool {
        match self {
            Expr::Number(_) => false,
            Expr::Var(v) => pick(*v),
            Expr::Neg(x) => x.uses(pick),
            Expr::Chain(first, rest) => first.uses(pick) || rest.iter().any(|(_, x)| x.uses(pick)),
            Expr::Pow(x, y) => x.uses(pick) || y.uses(pick),
            Expr::Call(_, args) => args.iter().any(|x| x.uses(pick)),
        }
    }

    /// The value at frame `t` of a job whose last frame is `max_f`.
    pub(super) fn eval(&self, t: f64, max_f: f64) -> f64 {
        match self {
            Expr::Number(v) => *v,
            Expr::Var(Var::T) => t,
            Expr::Var(Var::MaxF) => max_f,
            Expr::Neg(x) => -x.eval(t, max_f),
            Expr::Chain(first, rest) => rest.iter().fold(first.eval(t, max_f), |acc, (op, x)| {
                let y = x.eval(t, max_f);
                match op {
                    Op::Add => acc + y,
                    Op::Sub => acc - y,
                    Op::Mul => acc * y,
                    Op::Div => acc / y,
                    Op::Rem => acc - y * (acc / y).floor(),
                }
            }),
            Expr::Pow(x, y) => x.eval(t, max_f).powf(y.eval(t, max_f)),
            Expr::Call(func, args) => {
                let mut values = [0.0; 3];
                for (v, x) in values.iter_mut().zip(args) {
                    *v = x.eval(t, max_f);
                }
                func.apply(&values[..args.len()])
            }
        }
    }
}
