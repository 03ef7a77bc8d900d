//! What a `torch.save` pickle holds, as a list of tensors with unique names: the part shared
//! by the zip format ([`super::zip`]) and the legacy format ([`super::legacy`]), which differ
//! only in where a storage's bytes are.
//!
//! Names: a dictionary's tensors under their keys (a string as it is, an integer as its
//! number), a list's or tuple's under their indices, joined by dots (`{'sub': {'w': t}}`
//! gives `sub.w`, `{'lst': [t]}` gives `lst.0`); a whole `nn.Module` (`torch.save(model)`,
//! or one stored under any key) as its `state_dict()` names it (parameters and persistent
//! buffers, submodules by attribute, non-persistent buffers left out). A training checkpoint
//! that nests its state_dict under one of [`NESTED_KEYS`] has that part named without the
//! key (its other tensors keep their full names), and a stack of the wrapper prefixes
//! `module.` (DistributedDataParallel, DataParallel) and `_orig_mod.` (torch.compile) that
//! every name of the state_dict shares is removed from it.
//!
//! Nothing is dropped in silence: a tensor under a key of another type (a tuple, a float),
//! inside an object nnmnist cannot name (a namedtuple, a custom class), a value built by a
//! call of torch's that could make a tensor ([`may_build_tensor`]), or two tensors that
//! would share one name, make the file unreadable with the place inside it named.
use super::pickle::{Dict, Value};
use super::DType;

/// The keys under which training checkpoints commonly nest a state_dict (or a whole
/// module), tried in order.
pub const NESTED_KEYS: [&str; 3] = ["model_state_dict", "state_dict", "model"];

/// One tensor as the pickle describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct Described {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: Option<DType>,
    /// Where its values are, or why they cannot be read (a meta-device tensor holds none; a
    /// sparse or quantized tensor is not a plain strided one).
    pub storage: Result<StorageView, String>,
    /// Outside the state_dict a checkpoint nests (an optimizer's state, say).
    pub outside: bool,
}

/// A strided view of a storage: element `[i0, i1, ...]` at `offset + sum(i_k * strides[k])`
/// of storage `key`.
#[derive(Clone, Debug, PartialEq)]
pub struct StorageView {
    pub key: String,
    pub offset: usize,
    pub strides: Vec<usize>,
    /// The storage's element count as its persistent id gives it.
    pub numel: Option<u64>,
}

/// The tensors of a pickle's top value, the key a checkpoint nested its state_dict under,
/// the wrapper prefix removed from that state_dict's names ("" if none), and the values that
/// are not tensors.
pub struct Listing {
    pub tensors: Vec<Described>,
    pub nested: Option<&'static str>,
    pub prefix: String,
    pub others: Others,
}

/// The values of a file that are neither tensors nor containers of them (an epoch number, a
/// learning rate, a numpy array, an object of another class): how many, and the places of
/// the first [`Others::SHOWN`] with their types, as `[epoch] (int)`. A whole module's other
/// attributes are not among them: a module reads as its state_dict.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Others {
    pub count: usize,
    pub first: Vec<String>,
}

impl Others {
    pub const SHOWN: usize = 5;

    fn add(&mut self, at: &str, v: &Value) {
        self.count += 1;
        if self.first.len() < Self::SHOWN {
            self.first.push(format!("{} ({})", shown_at(at), type_name(v)));
        }
    }
}

/// Lists every tensor of `top` (see the module comment).
pub fn list(top: &Value) -> Result<Listing, String> {
    let nested = match top {
        Value::Dict(d) if !is_module(top) => NESTED_KEYS.into_iter().find(|k| match d.get(k) {
            Some(m) if is_module(m) => true,
            Some(Value::Dict(inner)) => inner.items.iter().any(|(_, v)| is_tensor(v)),
            _ => false,
        }),
        _ => None,
    };
    let mut inner = Vec::new();
    let mut outer = Vec::new();
    match (nested, top) {
        (Some(key), Value::Dict(d)) => {
            for (k, v) in &d.items {
                if matches!(k, Value::Str(s) if s == key) {
                    walk(v, String::new(), format!("[{}]", repr(k)), 1, &mut inner)?;
                } else {
                    walk_item(k, v, "", "", 1, &mut outer)?;
                }
            }
        }
        _ => walk(top, String::new(), String::new(), 0, &mut inner)?,
    }
    let prefix = strip_wrappers(&mut inner);
    let state_dict = inner.len();
    inner.append(&mut outer);
    let mut first_at: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
    for (name, at, _) in &inner {
        if let Some(other) = first_at.insert(name, at) {
            return Err(format!("two tensors would both be named {name:?}, the one at {} and the one at {}: nnmnist cannot tell them apart", shown_at(other), shown_at(at)));
        }
    }
    let tensors = inner.into_iter().enumerate().map(|(i, (name, _, v))| Described { outside: i >= state_dict, ..describe(name, v) }).collect();
    let mut others = Others::default();
    not_tensors(top, "", 0, &mut others);
    Ok(Listing { tensors, nested, prefix, others })
}

/// Counts into `out` the values inside `v` (at `at`) that are neither tensors, modules, None
/// nor containers (dictionaries, lists, tuples), whose items it looks into; a dictionary's
/// keys are looked at only where they are no str or int (which name what is under them).
fn not_tensors(v: &Value, at: &str, depth: usize, out: &mut Others) {
    if depth > MAX_DEPTH || is_tensor(v) || is_module(v) {
        return;
    }
    match v {
        Value::None => {}
        Value::Dict(d) => {
            for (k, item) in &d.items {
                if !matches!(k, Value::Str(_) | Value::Int(_)) {
                    not_tensors(k, &format!("{at} key {}", repr(k)), depth + 1, out);
                }
                not_tensors(item, &format!("{at}[{}]", repr(k)), depth + 1, out);
            }
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, item) in items.iter().enumerate() {
                not_tensors(item, &format!("{at}[{i}]"), depth + 1, out);
            }
        }
        other => out.add(at, other),
    }
}

/// (name, place in the file for messages, value) of each tensor found.
type Found<'a> = Vec<(String, String, &'a Value)>;

/// The deepest nesting walked (the pickle reader refuses deeper values anyway).
const MAX_DEPTH: usize = 1000;

fn shown_at(at: &str) -> &str {
    if at.is_empty() {
        "the top"
    } else {
        at
    }
}

fn child(name: &str, k: &str) -> String {
    if name.is_empty() {
        k.to_string()
    } else {
        format!("{name}.{k}")
    }
}

/// A dictionary item `k: v` inside the value named `name`, found at `at`.
fn walk_item<'a>(k: &Value, v: &'a Value, name: &str, at: &str, depth: usize, out: &mut Found<'a>) -> Result<(), String> {
    let here = format!("{at}[{}]", repr(k));
    if holds_tensor(k) {
        return Err(format!("a tensor is a dictionary key at {}, which nnmnist has no name for", shown_at(at)));
    }
    match k {
        Value::Str(s) => walk(v, child(name, s), here, depth + 1, out),
        Value::Int(i) => walk(v, child(name, &i.to_string()), here, depth + 1, out),
        other if holds_tensor(v) => Err(format!("a tensor at {here} is under a key of type {}, which nnmnist has no name for (it names str and int keys)", type_name(other))),
        _ => Ok(()),
    }
}

fn walk<'a>(v: &'a Value, name: String, at: String, depth: usize, out: &mut Found<'a>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("values nest deeper than {MAX_DEPTH} levels at {}", shown_at(&at)));
    }
    if is_tensor(v) {
        out.push((name, at, v));
        return Ok(());
    }
    if let Some(state) = module_state(v) {
        return walk_module(state, &name, &at, depth, out);
    }
    match v {
        Value::Dict(d) => {
            for (k, item) in &d.items {
                walk_item(k, item, &name, &at, depth, out)?;
            }
            Ok(())
        }
        Value::List(items) | Value::Tuple(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, child(&name, &i.to_string()), format!("{at}[{i}]"), depth + 1, out)?;
            }
            Ok(())
        }
        Value::Object { callee, .. } if holds_tensor(v) => Err(format!("tensors at {} are inside a {callee} object, which nnmnist cannot name", shown_at(&at))),
        Value::Object { callee, new, .. } if may_build_tensor(callee, *new) => Err(opaque(callee, *new, &at)),
        Value::Persistent(_) if holds_tensor(v) => Err(format!("tensors at {} are inside a persistent id", shown_at(&at))),
        _ => Ok(()),
    }
}

/// A module's parameters and persistent buffers under their state_dict names (parameters,
/// then buffers, then each submodule, as `Module.state_dict` orders them; a None skipped).
fn walk_module<'a>(state: &'a Dict, name: &str, at: &str, depth: usize, out: &mut Found<'a>) -> Result<(), String> {
    let non_persistent: Vec<&str> = match state.get("_non_persistent_buffers_set") {
        Some(Value::List(items)) => items.iter().filter_map(|v| if let Value::Str(s) = v { Some(s.as_str()) } else { None }).collect(),
        // A set: protocol 2 pickles it as a call of `__builtin__.set` (Python 2's name) on a list.
        Some(Value::Object { callee, args, .. }) if callee == "builtins.set" || callee == "__builtin__.set" => match args.first() {
            Some(Value::List(items)) => items.iter().filter_map(|v| if let Value::Str(s) = v { Some(s.as_str()) } else { None }).collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    for field in ["_parameters", "_buffers"] {
        let Some(Value::Dict(p)) = state.get(field) else { continue };
        for (k, v) in &p.items {
            let here = format!("{at}.{field}[{}]", repr(k));
            match (k, v) {
                (_, Value::None) => {}
                // A non-persistent buffer: not in the module's state_dict.
                (Value::Str(k), v) if is_tensor(v) && field == "_buffers" && non_persistent.contains(&k.as_str()) => {}
                (Value::Str(k), v) if is_tensor(v) => out.push((child(name, k), here, v)),
                _ if holds_tensor(v) => return Err(format!("the module entry at {here} is no tensor nnmnist can name")),
                (_, Value::Object { callee, new, .. }) if may_build_tensor(callee, *new) => return Err(opaque(callee, *new, &here)),
                _ => {}
            }
        }
    }
    if let Some(Value::Dict(sub)) = state.get("_modules") {
        for (k, v) in &sub.items {
            match (k, v) {
                (_, Value::None) => {}
                (Value::Str(k), v) => walk(v, child(name, k), format!("{at}.{k}"), depth + 1, out)?,
                _ if holds_tensor(v) => return Err(format!("a submodule at {at}._modules[{}] has a name that is no string", repr(k))),
                _ => {}
            }
        }
    }
    Ok(())
}

/// The values of torch's own that a pickle builds by calling torch and that hold no tensor
/// (a checkpoint's `torch.Size`, `torch.device`).
const TORCH_VALUES: [&str; 7] = ["torch.Size", "torch.device", "torch.dtype", "torch.layout", "torch.memory_format", "torch.finfo", "torch.iinfo"];

/// Whether a value the pickle builds (nnmnist never runs it) may be a tensor that the file
/// does not describe as one: a call of any of torch's functions (`torch.load`, ...) but the
/// tensor rebuilds nnmnist reads and [`TORCH_VALUES`]; an instance made of one of torch's
/// tensor classes (`new`: NEWOBJ of `torch.Tensor`, `torch.nn.parameter.Parameter`...). An
/// instance of another class (a `GradScaler`, a module) is none.
fn may_build_tensor(callee: &str, new: bool) -> bool {
    let Some(path) = callee.strip_prefix("torch.") else { return false };
    if new {
        let class = path.rsplit('.').next().unwrap_or(path);
        ["Tensor", "Parameter", "Buffer"].iter().any(|k| class.contains(k))
    } else {
        !TORCH_VALUES.contains(&callee)
    }
}

/// Why the value at `at`, built by `callee`, is not passed over.
fn opaque(callee: &str, new: bool, at: &str) -> String {
    let how = if new { "an instance of" } else { "built by calling" };
    format!("the value at {} is {how} {callee}, which nnmnist does not run: it may be a tensor that nnmnist cannot read", shown_at(at))
}

/// Whether any tensor lies inside `v`.
fn holds_tensor(v: &Value) -> bool {
    if is_tensor(v) {
        return true;
    }
    match v {
        Value::Dict(d) => d.items.iter().any(|(k, v)| holds_tensor(k) || holds_tensor(v)),
        Value::List(items) | Value::Tuple(items) => items.iter().any(holds_tensor),
        Value::Object { args, state, items, .. } => args.iter().chain(items).any(holds_tensor) || state.as_deref().is_some_and(holds_tensor),
        Value::Persistent(id) => holds_tensor(id),
        _ => false,
    }
}

/// A dictionary key as Python would print it (for messages).
fn repr(k: &Value) -> String {
    match k {
        Value::Str(s) => format!("{s:?}"),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
        Value::None => "None".into(),
        Value::Tuple(items) if items.len() == 1 => format!("({},)", repr(&items[0])),
        Value::Tuple(items) => format!("({})", items.iter().map(repr).collect::<Vec<_>>().join(", ")),
        other => format!("<{}>", type_name(other)),
    }
}

fn type_name(v: &Value) -> String {
    match v {
        Value::None => "None".into(),
        Value::Bool(_) => "bool".into(),
        Value::Int(_) | Value::BigInt => "int".into(),
        Value::Float(_) => "float".into(),
        Value::Str(_) => "str".into(),
        Value::Bytes(_) => "bytes".into(),
        Value::Tuple(_) => "tuple".into(),
        Value::List(_) => "list".into(),
        Value::Dict(_) => "dict".into(),
        Value::Global(g) => g.clone(),
        Value::Persistent(_) => "persistent id".into(),
        Value::Object { callee, .. } => callee.clone(),
    }
}

/// Whether `v` is a call that builds a tensor (of any kind, readable or not).
fn is_tensor(v: &Value) -> bool {
    matches!(v, Value::Object { callee, .. } if callee.starts_with("torch._utils._rebuild") || callee == "torch._tensor._rebuild_from_type_v2")
}

/// The `__dict__` of a pickled `torch.nn.Module`: the BUILD state holding `_parameters`
/// and `_modules`.
fn module_state(v: &Value) -> Option<&Dict> {
    match v {
        Value::Object { state: Some(s), .. } => match s.as_ref() {
            Value::Dict(d) if d.get("_parameters").is_some() && d.get("_modules").is_some() => Some(d),
            _ => None,
        },
        _ => None,
    }
}

fn is_module(v: &Value) -> bool {
    module_state(v).is_some()
}

/// Removes from every name any stack of the wrapper prefixes `module.` and `_orig_mod.`
/// that all names share; returns what was removed ("" if nothing).
fn strip_wrappers(found: &mut Found) -> String {
    let mut removed = String::new();
    if found.is_empty() {
        return removed;
    }
    loop {
        let Some(p) = ["module.", "_orig_mod."].into_iter().find(|p| found.iter().all(|(n, _, _)| n.starts_with(p) && n.len() > p.len())) else { return removed };
        for (n, _, _) in found.iter_mut() {
            n.drain(..p.len());
        }
        removed.push_str(p);
    }
}

/// The description of tensor `v` named `name`.
fn describe(name: String, v: &Value) -> Described {
    let unreadable = |shape: Vec<usize>, dtype: Option<DType>, why: String| Described { name: name.clone(), shape, dtype, storage: Err(why), outside: false };
    let Value::Object { callee, args, .. } = v else { return unreadable(vec![], None, "not a tensor".into()) };
    match callee.as_str() {
        "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => match args.first() {
            Some(inner) => describe(name, inner),
            None => unreadable(vec![], None, "a parameter without its tensor".into()),
        },
        "torch._tensor._rebuild_from_type_v2" => match (args.first(), args.get(2)) {
            // A tensor subclass: (function, class, arguments of the function, state).
            (Some(Value::Global(f)), Some(Value::Tuple(a))) => describe(name, &Value::Object { callee: f.clone(), args: a.clone(), state: None, items: Vec::new(), new: false }),
            _ => unreadable(vec![], None, "a tensor subclass nnmnist cannot read".into()),
        },
        "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor_v3" | "torch._utils._rebuild_tensor" => strided(&name, args).unwrap_or_else(|(shape, dtype, why)| unreadable(shape, dtype, why)),
        "torch._utils._rebuild_meta_tensor_no_storage" => {
            let dtype = match args.first() {
                Some(Value::Global(g)) => DType::from_torch(g),
                _ => None,
            };
            unreadable(ints(args.get(1)).unwrap_or_default(), dtype, "a meta-device tensor: the file holds its shape but no values".into())
        }
        other => {
            let kind = other.trim_start_matches("torch._utils._rebuild_").replace('_', " ");
            unreadable(vec![], None, format!("not a plain strided tensor ({kind}, built by {other})"))
        }
    }
}

fn ints(v: Option<&Value>) -> Option<Vec<usize>> {
    match v? {
        Value::Tuple(items) | Value::List(items) => items.iter().map(|x| if let Value::Int(i) = x { usize::try_from(*i).ok() } else { None }).collect(),
        _ => None,
    }
}

type Unreadable = (Vec<usize>, Option<DType>, String);

/// `_rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks, ...)`,
/// the storage a persistent id `("storage", torch.FloatStorage, "KEY", "cpu", numel, ...)`.
fn strided(name: &str, args: &[Value]) -> Result<Described, Unreadable> {
    let shape = ints(args.get(2)).ok_or((vec![], None, "its size is not a tuple of integers".to_string()))?;
    let strides = ints(args.get(3)).ok_or((shape.clone(), None, "its stride is not a tuple of integers".to_string()))?;
    let offset = match args.get(1) {
        Some(Value::Int(i)) if *i >= 0 => *i as usize,
        _ => return Err((shape, None, "its storage offset is not an integer".into())),
    };
    let Some(Value::Persistent(id)) = args.first() else { return Err((shape, None, "its storage is not a persistent reference".into())) };
    let Value::Tuple(id) = id.as_ref() else { return Err((shape, None, "its storage reference is not a tuple".into())) };
    let (class, key) = match (id.first(), id.get(1), id.get(2), id.get(3)) {
        (Some(Value::Str(s)), Some(Value::Global(c)), Some(Value::Str(k)), Some(Value::Str(_))) if s == "storage" => (c.clone(), k.clone()),
        _ => return Err((shape, None, "its storage reference is not (\"storage\", class, key, device, size)".into())),
    };
    if let Some(view) = id.get(5).filter(|v| **v != Value::None) {
        return Err((shape, None, format!("a view of a storage ({view:?}), which nnmnist does not read")));
    }
    let numel = match id.get(4) {
        Some(Value::Int(n)) if *n >= 0 => Some(*n as u64),
        _ => None,
    };
    let Some(dtype) = DType::from_torch(&class) else { return Err((shape, None, format!("storage class {class} is unknown to nnmnist"))) };
    if strides.len() != shape.len() {
        return Err((shape, Some(dtype), "its size and stride differ in length".into()));
    }
    if key.contains('/') || key.contains("..") {
        return Err((shape, Some(dtype), format!("storage key {key:?} is not a plain name")));
    }
    Ok(Described { name: name.to_string(), shape, dtype: Some(dtype), storage: Ok(StorageView { key, offset, strides, numel }), outside: false })
}
