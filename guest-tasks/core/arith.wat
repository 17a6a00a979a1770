;; A plain core module (not a component), with no imports: arithmetic on each value type, plus
;; a function that never returns and one that traps.
(module
  ;; i32 addition (wrapping).
  (func (export "add") (param $a i32) (param $b i32) (result i32)
    local.get $a
    local.get $b
    i32.add)

  ;; i64 multiplication (wrapping).
  (func (export "mul64") (param $a i64) (param $b i64) (result i64)
    local.get $a
    local.get $b
    i64.mul)

  ;; i64 squaring (wrapping): the tiny task of the bench, as a core module.
  (func (export "square") (param $x i64) (result i64)
    local.get $x
    local.get $x
    i64.mul)

  ;; f64 division (IEEE 754: x / 0.0 is an infinity or NaN, not a trap).
  (func (export "fdiv") (param $a f64) (param $b f64) (result f64)
    local.get $a
    local.get $b
    f64.div)

  ;; f32 halving.
  (func (export "half") (param $x f32) (result f32)
    local.get $x
    f32.const 0.5
    f32.mul)

  ;; An infinite loop with no side effects: only a timeout (epoch interruption) or killing
  ;; the worker ends it.
  (func (export "spin")
    (loop $forever
      br $forever))

  ;; Executes `unreachable`: always traps.
  (func (export "boom") (result i32)
    unreachable)
)
