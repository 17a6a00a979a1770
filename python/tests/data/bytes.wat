;; A component for the bytes mapping (list<u8> <-> bytes), in WebAssembly text: none of the
;; built-in tasks takes or returns a list<u8>.
;;   reverse: func(b: list<u8>) -> list<u8>   the bytes in reverse order
;;   size: func(b: list<u8>) -> u32            how many bytes
(component
  (core module $m
    (memory (export "memory") 1)
    (global $heap (mut i32) (i32.const 1024))
    ;; A bump allocator: each call runs in a fresh instance.
    (func $realloc (export "realloc")
      (param $old i32) (param $old_size i32) (param $align i32) (param $new_size i32)
      (result i32)
      (local $ret i32)
      (local.set $ret
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
          (i32.xor (i32.sub (local.get $align) (i32.const 1)) (i32.const -1))))
      (global.set $heap (i32.add (local.get $ret) (local.get $new_size)))
      (local.get $ret))
    (func (export "reverse") (param $ptr i32) (param $len i32) (result i32)
      (local $out i32) (local $i i32) (local $ret i32)
      (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $len)))
      (block $done
        (loop $next
          (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
          (i32.store8
            (i32.add (local.get $out) (local.get $i))
            (i32.load8_u
              (i32.sub (i32.add (local.get $ptr) (local.get $len))
                       (i32.add (local.get $i) (i32.const 1)))))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br $next)))
      (local.set $ret (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 8)))
      (i32.store (local.get $ret) (local.get $out))
      (i32.store offset=4 (local.get $ret) (local.get $len))
      (local.get $ret))
    (func (export "size") (param $ptr i32) (param $len i32) (result i32)
      (local.get $len)))
  (core instance $i (instantiate $m))
  (func (export "reverse") (param "b" (list u8)) (result (list u8))
    (canon lift (core func $i "reverse") (memory (core memory $i "memory")) (realloc (core func $i "realloc"))))
  (func (export "size") (param "b" (list u8)) (result u32)
    (canon lift (core func $i "size") (memory (core memory $i "memory")) (realloc (core func $i "realloc")))))
