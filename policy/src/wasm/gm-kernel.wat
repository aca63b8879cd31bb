;; GM policy substep kernel: f32x4 SIMD, one lane per pixel, four neighbouring pixels (a "group") at a
;; time; lanes never interact, so there are no horizontal reductions. The math is `gmKernel` in ../gm.ts
;; (see its module doc), regrouped so that only per-sample scalars change between substeps:
;;   ν_c   = α·x_c − β·xsrc_c
;;   l_k   = lw_k + (Σ_c m_kc·ν_c − ½ζ·|m_k|²)/D           w = softmax_k(l)
;;   x0_c  = (Σ_k w_k·m_kc + var·ν_c)/D
;;   out_c = a·x_c + b·(x_c − x0_c)        velocity (0, 1/σ̃), x0 (1, −1), Euler step (1, dσ/σ̃)
;; Layout (all f32, group-major so each group's data is one contiguous run — planar (K,C,H,W) planes
;; would make every group touch K·C pages): means [g][k][c][4], lwsq [g][k][lw ×4, |m|² ×4],
;; xsrc / xin / out [g][c][4], wout [g][k][4]. Pointers are byte offsets, 16-byte aligned.
;; Build: `npm run build:wasm -w @piflow/policy` (wabt) regenerates gm-kernel.wasm.ts; a test keeps it current.
(module
  (memory (import "env" "memory") 1)

  ;; e^x for x ≤ 0 (a logit minus the max), relative error < 2e-7; lanes below −87 (−∞ too) give 0.
  ;; x = n·ln2 + r, |r| ≤ ln2/2 (Cody–Waite split of ln2); e^r by Taylor to r⁶; 2^n from exponent bits
  ;; (n ≥ −126 after the clamp, so always a normal float).
  (func $exp_nonpos (param $x v128) (result v128)
    (local $xc v128) (local $n v128) (local $r v128) (local $p v128)
    (local.set $xc (f32x4.max (local.get $x) (f32x4.splat (f32.const -87))))
    (local.set $n (f32x4.nearest (f32x4.mul (local.get $xc) (f32x4.splat (f32.const 1.44269504089)))))
    (local.set $r
      (f32x4.sub
        (f32x4.sub (local.get $xc) (f32x4.mul (local.get $n) (f32x4.splat (f32.const 0.693359375))))
        (f32x4.mul (local.get $n) (f32x4.splat (f32.const -2.12194440e-4)))))
    (local.set $p (f32x4.splat (f32.const 0.00138888889)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 0.00833333333))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 0.0416666667))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 0.166666667))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 0.5))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 1))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 1))))
    (v128.and
      (f32x4.mul
        (local.get $p)
        (i32x4.shl
          (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $n)) (i32x4.splat (i32.const 127)))
          (i32.const 23)))
      (f32x4.gt (local.get $x) (f32x4.splat (f32.const -87)))))

  ;; One sample of `groups` pixel groups. Writes out (may alias xin) and, when wout ≠ 0, the posterior
  ;; weights. scratch: C + K vectors (ν_c, then the logits / weights of the current group).
  (func (export "gm_step")
    (param $means i32) (param $lwsq i32) (param $xsrc i32) (param $xin i32) (param $out i32)
    (param $wout i32) (param $scratch i32) (param $K i32) (param $C i32) (param $groups i32)
    (param $alpha f32) (param $beta f32) (param $half_zeta f32) (param $inv_d f32) (param $var f32)
    (param $a f32) (param $b f32)
    (local $g i32) (local $k i32) (local $c i32) (local $q i32) (local $s i32) (local $w i32)
    (local $cstride i32) (local $weights i32)
    (local $valpha v128) (local $vbeta v128) (local $vhz v128) (local $vinvd v128) (local $vvar v128)
    (local $va v128) (local $vb v128) (local $max v128) (local $sum v128) (local $acc v128)
    (local $v v128) (local $x v128)
    (local.set $cstride (i32.shl (local.get $C) (i32.const 4)))
    (local.set $weights (i32.add (local.get $scratch) (local.get $cstride)))
    (local.set $valpha (f32x4.splat (local.get $alpha)))
    (local.set $vbeta (f32x4.splat (local.get $beta)))
    (local.set $vhz (f32x4.splat (local.get $half_zeta)))
    (local.set $vinvd (f32x4.splat (local.get $inv_d)))
    (local.set $vvar (f32x4.splat (local.get $var)))
    (local.set $va (f32x4.splat (local.get $a)))
    (local.set $vb (f32x4.splat (local.get $b)))
    (local.set $g (i32.const 0))
    (block $done
      (loop $group
        (br_if $done (i32.ge_u (local.get $g) (local.get $groups)))

        ;; ν_c
        (local.set $c (i32.const 0))
        (loop $nu
          (local.set $s (i32.shl (local.get $c) (i32.const 4)))
          (v128.store (i32.add (local.get $scratch) (local.get $s))
            (f32x4.sub
              (f32x4.mul (local.get $valpha) (v128.load (i32.add (local.get $xin) (local.get $s))))
              (f32x4.mul (local.get $vbeta) (v128.load (i32.add (local.get $xsrc) (local.get $s))))))
          (local.set $c (i32.add (local.get $c) (i32.const 1)))
          (br_if $nu (i32.lt_u (local.get $c) (local.get $C))))

        ;; logits and their max; q walks m_00, m_01, …, m_K−1,C−1 of this group
        (local.set $max (f32x4.splat (f32.const -inf)))
        (local.set $q (local.get $means))
        (local.set $k (i32.const 0))
        (loop $logit
          (local.set $acc (v128.const f32x4 0 0 0 0))
          (local.set $c (i32.const 0))
          (loop $dot
            (local.set $acc
              (f32x4.add (local.get $acc)
                (f32x4.mul
                  (v128.load (local.get $q))
                  (v128.load (i32.add (local.get $scratch) (i32.shl (local.get $c) (i32.const 4)))))))
            (local.set $q (i32.add (local.get $q) (i32.const 16)))
            (local.set $c (i32.add (local.get $c) (i32.const 1)))
            (br_if $dot (i32.lt_u (local.get $c) (local.get $C))))
          (local.set $s (i32.add (local.get $lwsq) (i32.shl (local.get $k) (i32.const 5))))
          (local.set $v
            (f32x4.add
              (v128.load (local.get $s))
              (f32x4.mul
                (f32x4.sub (local.get $acc) (f32x4.mul (local.get $vhz) (v128.load offset=16 (local.get $s))))
                (local.get $vinvd))))
          (v128.store (i32.add (local.get $weights) (i32.shl (local.get $k) (i32.const 4))) (local.get $v))
          (local.set $max (f32x4.max (local.get $max) (local.get $v)))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $logit (i32.lt_u (local.get $k) (local.get $K))))

        ;; softmax: e_k = exp(l_k − max), then w_k = e_k / Σe in place
        (local.set $sum (v128.const f32x4 0 0 0 0))
        (local.set $k (i32.const 0))
        (loop $exp
          (local.set $s (i32.add (local.get $weights) (i32.shl (local.get $k) (i32.const 4))))
          (local.set $v (call $exp_nonpos (f32x4.sub (v128.load (local.get $s)) (local.get $max))))
          (v128.store (local.get $s) (local.get $v))
          (local.set $sum (f32x4.add (local.get $sum) (local.get $v)))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $exp (i32.lt_u (local.get $k) (local.get $K))))
        (local.set $sum (f32x4.div (f32x4.splat (f32.const 1)) (local.get $sum)))
        (local.set $k (i32.const 0))
        (loop $normalise
          (local.set $s (i32.shl (local.get $k) (i32.const 4)))
          (local.set $v (f32x4.mul (v128.load (i32.add (local.get $weights) (local.get $s))) (local.get $sum)))
          (v128.store (i32.add (local.get $weights) (local.get $s)) (local.get $v))
          (if (local.get $wout)
            (then (v128.store (i32.add (local.get $wout) (local.get $s)) (local.get $v))))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $normalise (i32.lt_u (local.get $k) (local.get $K))))

        ;; per channel: Σ_k w_k·m_kc (q walks m_0c, m_1c, …), x0 and the output
        (local.set $c (i32.const 0))
        (loop $channel
          (local.set $s (i32.shl (local.get $c) (i32.const 4)))
          (local.set $acc (v128.const f32x4 0 0 0 0))
          (local.set $q (i32.add (local.get $means) (local.get $s)))
          (local.set $w (local.get $weights))
          (local.set $k (i32.const 0))
          (loop $mix
            (local.set $acc
              (f32x4.add (local.get $acc) (f32x4.mul (v128.load (local.get $w)) (v128.load (local.get $q)))))
            (local.set $q (i32.add (local.get $q) (local.get $cstride)))
            (local.set $w (i32.add (local.get $w) (i32.const 16)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br_if $mix (i32.lt_u (local.get $k) (local.get $K))))
          (local.set $x (v128.load (i32.add (local.get $xin) (local.get $s))))
          ;; x − x0 = x − (Σ w·m + var·ν)/D
          (local.set $v
            (f32x4.sub (local.get $x)
              (f32x4.mul
                (f32x4.add (local.get $acc)
                  (f32x4.mul (local.get $vvar) (v128.load (i32.add (local.get $scratch) (local.get $s)))))
                (local.get $vinvd))))
          (v128.store (i32.add (local.get $out) (local.get $s))
            (f32x4.add (f32x4.mul (local.get $va) (local.get $x)) (f32x4.mul (local.get $vb) (local.get $v))))
          (local.set $c (i32.add (local.get $c) (i32.const 1)))
          (br_if $channel (i32.lt_u (local.get $c) (local.get $C))))

        ;; next group
        (local.set $means (i32.add (local.get $means) (i32.mul (local.get $K) (local.get $cstride))))
        (local.set $lwsq (i32.add (local.get $lwsq) (i32.shl (local.get $K) (i32.const 5))))
        (local.set $xsrc (i32.add (local.get $xsrc) (local.get $cstride)))
        (local.set $xin (i32.add (local.get $xin) (local.get $cstride)))
        (local.set $out (i32.add (local.get $out) (local.get $cstride)))
        (if (local.get $wout)
          (then (local.set $wout (i32.add (local.get $wout) (i32.shl (local.get $K) (i32.const 4))))))
        (local.set $g (i32.add (local.get $g) (i32.const 1)))
        (br $group)))))
