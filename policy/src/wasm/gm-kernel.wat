;; GM policy substep kernel: f32x4 SIMD, one lane per pixel, four neighbouring pixels (a "group") at a
;; time; lanes never interact, so there are no horizontal reductions. The math is `gmKernel` in ../gm.ts
;; (see its module doc), regrouped so that only per-sample scalars change between substeps:
;;   ν_c   = α·x_c − β·xsrc_c
;;   l_k   = lw_k + (Σ_c m_kc·ν_c − ½ζ·|m_k|²)/D           w = softmax_k(l), in base 2
;;           (the caller stores lw_k·log2(e) and passes log2(e)/D, so w_k = 2^(l'_k − max) / Σ)
;;   x0_c  = (Σ_k w_k·m_kc + var·ν_c)/D
;;   out_c = a·x_c + b·(x_c − x0_c)        velocity (0, 1/σ̃), x0 (1, −1), Euler step (1, dσ/σ̃)
;; Layout (all f32, group-major so each group's data is one contiguous run — planar (K,C,H,W) planes
;; would make every group touch K·C pages): means [g][k][c][4], lwsq [g][k][lw·log2e ×4, |m|² ×4],
;; xsrc / xin / out [g][c][4], wout [g][k][4]. C is padded to a multiple of 4 with zero channels (they
;; add nothing to any dot product or sum), so every channel loop runs in unrolled blocks of four:
;; at small C (RGB: 3) loop overhead, not arithmetic, would dominate otherwise.
;; Pointers are byte offsets, 16-byte aligned.
;; Build: `npm run build:wasm -w @piflow/policy` (wabt) regenerates gm-kernel.wasm.ts; a test keeps it current.
(module
  (memory (import "env" "memory") 1)

  ;; 2^y for y ≤ 0 (a base-2 logit minus the max), relative error < 2e-7; lanes below −126 (−∞ too)
  ;; give 0. y = n + f with n = round(y), |f| ≤ ½; 2^f = e^(f·ln2) by Taylor to degree 6; 2^n from
  ;; exponent bits (n ≥ −126 after the clamp, so always a normal float). Base 2 because the logits'
  ;; scale absorbs log2(e) for free (see gm_step), which saves the Cody–Waite reduction of e^x.
  (func $exp2_nonpos (param $y v128) (result v128)
    (local $yc v128) (local $n v128) (local $f v128) (local $p v128)
    (local.set $yc (f32x4.max (local.get $y) (f32x4.splat (f32.const -126))))
    (local.set $n (f32x4.nearest (local.get $yc)))
    (local.set $f (f32x4.sub (local.get $yc) (local.get $n)))
    (local.set $p (f32x4.splat (f32.const 1.5403530393381606e-4)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $f)) (f32x4.splat (f32.const 1.3333558146428443e-3))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $f)) (f32x4.splat (f32.const 9.618129107628477e-3))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $f)) (f32x4.splat (f32.const 5.550410866482158e-2))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $f)) (f32x4.splat (f32.const 0.2402265069591007))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $f)) (f32x4.splat (f32.const 0.6931471805599453))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $f)) (f32x4.splat (f32.const 1))))
    (v128.and
      (f32x4.mul
        (local.get $p)
        (i32x4.shl
          (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $n)) (i32x4.splat (i32.const 127)))
          (i32.const 23)))
      (f32x4.gt (local.get $y) (f32x4.splat (f32.const -126)))))

  ;; One sample of `groups` pixel groups; C is the padded channel count (a multiple of 4). Writes out
  ;; (may alias xin) and, when wout ≠ 0, the posterior weights. scratch: C + K vectors (ν_c, then the
  ;; logits / weights of the current group).
  (func (export "gm_step")
    (param $means i32) (param $lwsq i32) (param $xsrc i32) (param $xin i32) (param $out i32)
    (param $wout i32) (param $scratch i32) (param $K i32) (param $C i32) (param $groups i32)
    (param $alpha f32) (param $beta f32) (param $half_zeta f32) (param $inv_d f32)
    (param $inv_d_log2 f32) (param $var f32) (param $a f32) (param $b f32)
    (local $g i32) (local $k i32) (local $q i32) (local $s i32) (local $t i32) (local $w i32)
    (local $cstride i32) (local $weights i32) (local $weights_end i32)
    (local $valpha v128) (local $vbeta v128) (local $vhz v128) (local $vinvd v128) (local $vinvd2 v128)
    (local $vvar v128) (local $va v128) (local $vb v128) (local $max v128) (local $sum v128) (local $v v128)
    (local $acc0 v128) (local $acc1 v128) (local $acc2 v128) (local $acc3 v128)
    (local.set $cstride (i32.shl (local.get $C) (i32.const 4)))
    (local.set $weights (i32.add (local.get $scratch) (local.get $cstride)))
    (local.set $weights_end (i32.add (local.get $weights) (i32.shl (local.get $K) (i32.const 4))))
    (local.set $valpha (f32x4.splat (local.get $alpha)))
    (local.set $vbeta (f32x4.splat (local.get $beta)))
    (local.set $vhz (f32x4.splat (local.get $half_zeta)))
    (local.set $vinvd (f32x4.splat (local.get $inv_d)))
    (local.set $vinvd2 (f32x4.splat (local.get $inv_d_log2)))
    (local.set $vvar (f32x4.splat (local.get $var)))
    (local.set $va (f32x4.splat (local.get $a)))
    (local.set $vb (f32x4.splat (local.get $b)))
    (local.set $g (i32.const 0))
    (block $done
      (loop $group
        (br_if $done (i32.ge_u (local.get $g) (local.get $groups)))

        ;; ν_c = α·x_c − β·xsrc_c, four channels per iteration (s = byte offset of the channel block)
        (local.set $s (i32.const 0))
        (loop $nu
          (call $nu4 (i32.add (local.get $scratch) (local.get $s)) (i32.add (local.get $xin) (local.get $s))
            (i32.add (local.get $xsrc) (local.get $s)) (local.get $valpha) (local.get $vbeta))
          (local.set $s (i32.add (local.get $s) (i32.const 64)))
          (br_if $nu (i32.lt_u (local.get $s) (local.get $cstride))))

        ;; logits and their max; q walks m_00, m_01, …, m_K−1,C−1 of this group, t walks ν
        (local.set $max (f32x4.splat (f32.const -inf)))
        (local.set $q (local.get $means))
        (local.set $s (local.get $lwsq))
        (local.set $w (local.get $weights))
        (loop $logit
          (local.set $acc0 (v128.const f32x4 0 0 0 0))
          (local.set $t (local.get $scratch))
          (loop $dot
            (local.set $acc0
              (f32x4.add (local.get $acc0)
                (f32x4.add
                  (f32x4.add
                    (f32x4.mul (v128.load (local.get $q)) (v128.load (local.get $t)))
                    (f32x4.mul (v128.load offset=16 (local.get $q)) (v128.load offset=16 (local.get $t))))
                  (f32x4.add
                    (f32x4.mul (v128.load offset=32 (local.get $q)) (v128.load offset=32 (local.get $t)))
                    (f32x4.mul (v128.load offset=48 (local.get $q)) (v128.load offset=48 (local.get $t)))))))
            (local.set $q (i32.add (local.get $q) (i32.const 64)))
            (local.set $t (i32.add (local.get $t) (i32.const 64)))
            (br_if $dot (i32.lt_u (local.get $t) (local.get $weights))))
          ;; base-2 logit: l_k·log2(e) = lw_k·log2(e) (stored so) + (dot − ½ζ·|m_k|²)·log2(e)/D
          (local.set $v
            (f32x4.add
              (v128.load (local.get $s))
              (f32x4.mul
                (f32x4.sub (local.get $acc0) (f32x4.mul (local.get $vhz) (v128.load offset=16 (local.get $s))))
                (local.get $vinvd2))))
          (v128.store (local.get $w) (local.get $v))
          (local.set $max (f32x4.max (local.get $max) (local.get $v)))
          (local.set $s (i32.add (local.get $s) (i32.const 32)))
          (local.set $w (i32.add (local.get $w) (i32.const 16)))
          (br_if $logit (i32.lt_u (local.get $w) (local.get $weights_end))))

        ;; softmax: e_k = 2^(l_k − max) in place (base-2 logits); the 1/Σe is applied once per channel sum below
        (local.set $sum (v128.const f32x4 0 0 0 0))
        (local.set $w (local.get $weights))
        (loop $exp
          (local.set $v (call $exp2_nonpos (f32x4.sub (v128.load (local.get $w)) (local.get $max))))
          (v128.store (local.get $w) (local.get $v))
          (local.set $sum (f32x4.add (local.get $sum) (local.get $v)))
          (local.set $w (i32.add (local.get $w) (i32.const 16)))
          (br_if $exp (i32.lt_u (local.get $w) (local.get $weights_end))))
        (local.set $sum (f32x4.div (f32x4.splat (f32.const 1)) (local.get $sum)))
        (if (local.get $wout)
          (then
            (local.set $w (local.get $weights))
            (local.set $t (local.get $wout))
            (loop $normalise
              (v128.store (local.get $t) (f32x4.mul (v128.load (local.get $w)) (local.get $sum)))
              (local.set $t (i32.add (local.get $t) (i32.const 16)))
              (local.set $w (i32.add (local.get $w) (i32.const 16)))
              (br_if $normalise (i32.lt_u (local.get $w) (local.get $weights_end))))))

        ;; per block of four channels: Σ_k e_k·m_kc in four independent sums (q walks m_0c, m_1c, …),
        ;; then x0 and the outputs
        (local.set $s (i32.const 0))
        (loop $channels
          (local.set $acc0 (v128.const f32x4 0 0 0 0))
          (local.set $acc1 (v128.const f32x4 0 0 0 0))
          (local.set $acc2 (v128.const f32x4 0 0 0 0))
          (local.set $acc3 (v128.const f32x4 0 0 0 0))
          (local.set $q (i32.add (local.get $means) (local.get $s)))
          (local.set $w (local.get $weights))
          (loop $mix
            (local.set $v (v128.load (local.get $w)))
            (local.set $acc0 (f32x4.add (local.get $acc0) (f32x4.mul (local.get $v) (v128.load (local.get $q)))))
            (local.set $acc1 (f32x4.add (local.get $acc1) (f32x4.mul (local.get $v) (v128.load offset=16 (local.get $q)))))
            (local.set $acc2 (f32x4.add (local.get $acc2) (f32x4.mul (local.get $v) (v128.load offset=32 (local.get $q)))))
            (local.set $acc3 (f32x4.add (local.get $acc3) (f32x4.mul (local.get $v) (v128.load offset=48 (local.get $q)))))
            (local.set $q (i32.add (local.get $q) (local.get $cstride)))
            (local.set $w (i32.add (local.get $w) (i32.const 16)))
            (br_if $mix (i32.lt_u (local.get $w) (local.get $weights_end))))
          (local.set $t (i32.add (local.get $scratch) (local.get $s)))
          (local.set $q (i32.add (local.get $xin) (local.get $s)))
          (local.set $w (i32.add (local.get $out) (local.get $s)))
          (call $out1 (local.get $w) (local.get $q) (local.get $t) (f32x4.mul (local.get $acc0) (local.get $sum))
            (local.get $vvar) (local.get $vinvd) (local.get $va) (local.get $vb))
          (call $out1 (i32.add (local.get $w) (i32.const 16)) (i32.add (local.get $q) (i32.const 16))
            (i32.add (local.get $t) (i32.const 16)) (f32x4.mul (local.get $acc1) (local.get $sum))
            (local.get $vvar) (local.get $vinvd) (local.get $va) (local.get $vb))
          (call $out1 (i32.add (local.get $w) (i32.const 32)) (i32.add (local.get $q) (i32.const 32))
            (i32.add (local.get $t) (i32.const 32)) (f32x4.mul (local.get $acc2) (local.get $sum))
            (local.get $vvar) (local.get $vinvd) (local.get $va) (local.get $vb))
          (call $out1 (i32.add (local.get $w) (i32.const 48)) (i32.add (local.get $q) (i32.const 48))
            (i32.add (local.get $t) (i32.const 48)) (f32x4.mul (local.get $acc3) (local.get $sum))
            (local.get $vvar) (local.get $vinvd) (local.get $va) (local.get $vb))
          (local.set $s (i32.add (local.get $s) (i32.const 64)))
          (br_if $channels (i32.lt_u (local.get $s) (local.get $cstride))))

        ;; next group
        (local.set $means (i32.add (local.get $means) (i32.mul (local.get $K) (local.get $cstride))))
        (local.set $lwsq (i32.add (local.get $lwsq) (i32.shl (local.get $K) (i32.const 5))))
        (local.set $xsrc (i32.add (local.get $xsrc) (local.get $cstride)))
        (local.set $xin (i32.add (local.get $xin) (local.get $cstride)))
        (local.set $out (i32.add (local.get $out) (local.get $cstride)))
        (if (local.get $wout)
          (then (local.set $wout (i32.add (local.get $wout) (i32.shl (local.get $K) (i32.const 4))))))
        (local.set $g (i32.add (local.get $g) (i32.const 1)))
        (br $group))))

  ;; ν for four channels: dst[i] = α·x[i] − β·xsrc[i]
  (func $nu4 (param $dst i32) (param $x i32) (param $xsrc i32) (param $valpha v128) (param $vbeta v128)
    (v128.store (local.get $dst)
      (f32x4.sub (f32x4.mul (local.get $valpha) (v128.load (local.get $x)))
        (f32x4.mul (local.get $vbeta) (v128.load (local.get $xsrc)))))
    (v128.store offset=16 (local.get $dst)
      (f32x4.sub (f32x4.mul (local.get $valpha) (v128.load offset=16 (local.get $x)))
        (f32x4.mul (local.get $vbeta) (v128.load offset=16 (local.get $xsrc)))))
    (v128.store offset=32 (local.get $dst)
      (f32x4.sub (f32x4.mul (local.get $valpha) (v128.load offset=32 (local.get $x)))
        (f32x4.mul (local.get $vbeta) (v128.load offset=32 (local.get $xsrc)))))
    (v128.store offset=48 (local.get $dst)
      (f32x4.sub (f32x4.mul (local.get $valpha) (v128.load offset=48 (local.get $x)))
        (f32x4.mul (local.get $vbeta) (v128.load offset=48 (local.get $xsrc))))))

  ;; One channel's output: out = a·x + b·(x − x0), x0 = (Σ w·m + var·ν)/D (acc = Σ w·m)
  (func $out1 (param $out i32) (param $xin i32) (param $nu i32) (param $acc v128) (param $vvar v128)
    (param $vinvd v128) (param $va v128) (param $vb v128)
    (local $x v128)
    (local.set $x (v128.load (local.get $xin)))
    (v128.store (local.get $out)
      (f32x4.add (f32x4.mul (local.get $va) (local.get $x))
        (f32x4.mul (local.get $vb)
          (f32x4.sub (local.get $x)
            (f32x4.mul
              (f32x4.add (local.get $acc) (f32x4.mul (local.get $vvar) (v128.load (local.get $nu))))
              (local.get $vinvd)))))))
)
