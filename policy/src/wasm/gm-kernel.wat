;; GM policy substep kernel: f32x4 SIMD, one lane per pixel, four neighbouring pixels (a "group") at a
;; time; lanes never interact, so there are no horizontal reductions. The math is `gmKernel` in ../gm.ts
;; (see its module doc), regrouped so that only per-sample scalars change between substeps:
;;   ν_c   = α·x_c − β·xsrc_c
;;   l_k   = lw_k + (Σ_c m_kc·ν_c − ½ζ·|m_k|²)/D           w = softmax_k(l), in base 2
;;           (the caller stores lw_k·log2(e) and passes log2(e)/D, so w_k = 2^(l'_k − max) / Σ;
;;           lw may carry any per-pixel shift: softmax ignores it)
;;   x0_c  = (Σ_k w_k·m_kc + var·ν_c)/D
;;   out_c = a·x_c + b·(x_c − x0_c)        velocity (0, 1/σ̃), x0 (1, −1), Euler step (1, dσ/σ̃)
;; Layout (all f32, group-major so each group's data is one contiguous run — planar (K,C,H,W) planes
;; would make every group touch K·C pages): means [g][k][c][4], lwsq [g][k][lw·log2e ×4, |m|² ×4],
;; xsrc / xin / out [g][c][4], wout [g][k][4]. C is padded to a multiple of 4 with zero channels (they
;; add nothing to any dot product or sum), so every channel loop runs in unrolled blocks of four:
;; at small C (RGB: 3) loop overhead, not arithmetic, would dominate otherwise.
;; Pointers are byte offsets, 16-byte aligned. gm_pack (below) builds means, lwsq and xsrc of a segment.
;; Build: `npm run build:wasm -w @piflow/policy` (wabt) regenerates gm-kernel.wasm.ts; a test keeps it current.
(module
  (memory (import "env" "memory") 1)

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
    (local $x v128) (local $y v128) (local $yc v128) (local $et v128) (local $f v128) (local $p v128)
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
          (local.set $t (i32.add (local.get $scratch) (local.get $s)))
          (local.set $q (i32.add (local.get $xin) (local.get $s)))
          (local.set $w (i32.add (local.get $xsrc) (local.get $s)))
          (v128.store (local.get $t)
            (f32x4.sub (f32x4.mul (local.get $valpha) (v128.load (local.get $q)))
              (f32x4.mul (local.get $vbeta) (v128.load (local.get $w)))))
          (v128.store offset=16 (local.get $t)
            (f32x4.sub (f32x4.mul (local.get $valpha) (v128.load offset=16 (local.get $q)))
              (f32x4.mul (local.get $vbeta) (v128.load offset=16 (local.get $w)))))
          (v128.store offset=32 (local.get $t)
            (f32x4.sub (f32x4.mul (local.get $valpha) (v128.load offset=32 (local.get $q)))
              (f32x4.mul (local.get $vbeta) (v128.load offset=32 (local.get $w)))))
          (v128.store offset=48 (local.get $t)
            (f32x4.sub (f32x4.mul (local.get $valpha) (v128.load offset=48 (local.get $q)))
              (f32x4.mul (local.get $vbeta) (v128.load offset=48 (local.get $w)))))
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

        ;; softmax: e_k = 2^(l_k − max) in place (base-2 logits); the 1/Σe is applied once per channel
        ;; sum below. 2^y for y ≤ 0, relative error < 2e-7; lanes below −126 (−∞ too) give 0. y = n + f
        ;; with n = round(y), |f| ≤ ½; 2^f = e^(f·ln2) by Taylor to degree 6; 2^n from exponent bits
        ;; (n ≥ −126 after the clamp: always a normal float). Base 2 because the logits' scale absorbs
        ;; log2(e) for free, which saves the Cody–Waite reduction of e^x. Rounding by the 1.5·2²³ trick:
        ;; t = y + 1.5·2²³ rounds y to an integer (half to even, as f32x4.nearest) and holds
        ;; 0x4B400000 + n in its bits, so n and the exponent field both come from t by adds.
        ;; Written out here, like every inner block of this kernel: V8 does not inline wasm calls, and
        ;; a call per exp cost 13 % of the kernel's time.
        (local.set $sum (v128.const f32x4 0 0 0 0))
        (local.set $w (local.get $weights))
        (loop $exp
          (local.set $y (f32x4.sub (v128.load (local.get $w)) (local.get $max)))
          (local.set $yc (f32x4.max (local.get $y) (f32x4.splat (f32.const -126))))
          (local.set $et (f32x4.add (local.get $yc) (f32x4.splat (f32.const 12582912))))
          (local.set $f (f32x4.sub (local.get $yc) (f32x4.sub (local.get $et) (f32x4.splat (f32.const 12582912)))))
          (local.set $p (f32x4.splat (f32.const 1.5403530393381606e-4)))
          (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $f)) (f32x4.splat (f32.const 1.3333558146428443e-3))))
          (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $f)) (f32x4.splat (f32.const 9.618129107628477e-3))))
          (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $f)) (f32x4.splat (f32.const 5.550410866482158e-2))))
          (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $f)) (f32x4.splat (f32.const 0.2402265069591007))))
          (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $f)) (f32x4.splat (f32.const 0.6931471805599453))))
          (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $f)) (f32x4.splat (f32.const 1))))
          (local.set $v (v128.and
            (f32x4.mul (local.get $p)
              ;; (bits(t) − 0x4B400000 + 127) << 23: the exponent field of 2^n
              (i32x4.shl (i32x4.add (local.get $et) (i32x4.splat (i32.const -1262485377))) (i32.const 23)))
            (f32x4.gt (local.get $y) (f32x4.splat (f32.const -126)))))
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
          ;; out = a·x + b·(x − x0), x0 = (Σ_k e_k·m_kc / Σe + var·ν_c)/D, per channel of the block
          (local.set $x (v128.load (local.get $q)))
          (v128.store (local.get $w)
            (f32x4.add (f32x4.mul (local.get $va) (local.get $x))
              (f32x4.mul (local.get $vb)
                (f32x4.sub (local.get $x)
                  (f32x4.mul
                    (f32x4.add (f32x4.mul (local.get $acc0) (local.get $sum))
                      (f32x4.mul (local.get $vvar) (v128.load (local.get $t))))
                    (local.get $vinvd))))))
          (local.set $x (v128.load offset=16 (local.get $q)))
          (v128.store offset=16 (local.get $w)
            (f32x4.add (f32x4.mul (local.get $va) (local.get $x))
              (f32x4.mul (local.get $vb)
                (f32x4.sub (local.get $x)
                  (f32x4.mul
                    (f32x4.add (f32x4.mul (local.get $acc1) (local.get $sum))
                      (f32x4.mul (local.get $vvar) (v128.load offset=16 (local.get $t))))
                    (local.get $vinvd))))))
          (local.set $x (v128.load offset=32 (local.get $q)))
          (v128.store offset=32 (local.get $w)
            (f32x4.add (f32x4.mul (local.get $va) (local.get $x))
              (f32x4.mul (local.get $vb)
                (f32x4.sub (local.get $x)
                  (f32x4.mul
                    (f32x4.add (f32x4.mul (local.get $acc2) (local.get $sum))
                      (f32x4.mul (local.get $vvar) (v128.load offset=32 (local.get $t))))
                    (local.get $vinvd))))))
          (local.set $x (v128.load offset=48 (local.get $q)))
          (v128.store offset=48 (local.get $w)
            (f32x4.add (f32x4.mul (local.get $va) (local.get $x))
              (f32x4.mul (local.get $vb)
                (f32x4.sub (local.get $x)
                  (f32x4.mul
                    (f32x4.add (f32x4.mul (local.get $acc3) (local.get $sum))
                      (f32x4.mul (local.get $vvar) (v128.load offset=48 (local.get $t))))
                    (local.get $vinvd))))))
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

;; The segment-constant data of one sample, from planar staging copies (plane stride = groups·4
  ;; floats, pad lanes zero) to the group-major regions gm_step reads: means_x0 = x_src − σ_src·means_u,
  ;; [lw·log2(e), |m|²] per component, x_src; channels C…Cp−1 written as zeros. means_x0 and |m|² are
  ;; computed in f64 and rounded once, exactly as the JS kernel's pack does, so both kernels start a
  ;; segment from bit-identical data. Returns Σ|m|² over all lanes (f64): the caller's finiteness check
  ;; (NaN/∞ in x_src or means_u reaches it). One v128 load per plane and group: ~5× the JS pack.
  (func (export "gm_pack")
    (param $means i32) (param $lwsq i32) (param $xsrc i32)
    (param $stage_m i32) (param $stage_lw i32) (param $stage_x i32)
    (param $K i32) (param $C i32) (param $Cp i32) (param $groups i32) (param $sigma f64)
    (result f64)
    (local $g i32) (local $k i32) (local $c i32) (local $plane i32) (local $at i32)
    (local $vs v128) (local $x v128) (local $m v128) (local $lo v128) (local $hi v128) (local $v v128)
    (local $sqlo v128) (local $sqhi v128) (local $total v128)
    (local.set $plane (i32.shl (local.get $groups) (i32.const 4)))
    (local.set $vs (f64x2.splat (local.get $sigma)))
    (local.set $total (v128.const f64x2 0 0))
    (local.set $g (i32.const 0))
    (block $done
      (loop $group
        (br_if $done (i32.ge_u (local.get $g) (local.get $groups)))
        ;; x_src of this group: C planes, then zero padding
        (local.set $c (i32.const 0))
        (loop $xs
          (v128.store (local.get $xsrc)
            (if (result v128) (i32.lt_u (local.get $c) (local.get $C))
              (then (v128.load (i32.add (local.get $stage_x) (i32.mul (local.get $c) (local.get $plane)))))
              (else (v128.const f32x4 0 0 0 0))))
          (local.set $xsrc (i32.add (local.get $xsrc) (i32.const 16)))
          (local.set $c (i32.add (local.get $c) (i32.const 1)))
          (br_if $xs (i32.lt_u (local.get $c) (local.get $Cp))))
        (local.set $k (i32.const 0))
        (loop $component
          (local.set $sqlo (v128.const f64x2 0 0))
          (local.set $sqhi (v128.const f64x2 0 0))
          (local.set $c (i32.const 0))
          (loop $channel
            (if (i32.lt_u (local.get $c) (local.get $C))
              (then
                (local.set $at (i32.mul (local.get $c) (local.get $plane)))
                (local.set $x (v128.load (i32.add (local.get $stage_x) (local.get $at))))
                (local.set $m
                  (v128.load (i32.add (local.get $stage_m)
                    (i32.add (local.get $at)
                      (i32.mul (i32.mul (local.get $k) (local.get $C)) (local.get $plane))))))
                ;; lanes 0–1 and 2–3 in f64: x − σ·m, then one rounding to f32
                (local.set $lo
                  (f64x2.sub (f64x2.promote_low_f32x4 (local.get $x))
                    (f64x2.mul (local.get $vs) (f64x2.promote_low_f32x4 (local.get $m)))))
                (local.set $hi
                  (f64x2.sub (f64x2.promote_low_f32x4 (call $high_half (local.get $x)))
                    (f64x2.mul (local.get $vs) (f64x2.promote_low_f32x4 (call $high_half (local.get $m))))))
                (local.set $v (call $demote4 (local.get $lo) (local.get $hi)))
                ;; |m|² from the rounded values, in f64
                (local.set $lo (f64x2.promote_low_f32x4 (local.get $v)))
                (local.set $hi (f64x2.promote_low_f32x4 (call $high_half (local.get $v))))
                (local.set $sqlo (f64x2.add (local.get $sqlo) (f64x2.mul (local.get $lo) (local.get $lo))))
                (local.set $sqhi (f64x2.add (local.get $sqhi) (f64x2.mul (local.get $hi) (local.get $hi)))))
              (else (local.set $v (v128.const f32x4 0 0 0 0))))
            (v128.store (local.get $means) (local.get $v))
            (local.set $means (i32.add (local.get $means) (i32.const 16)))
            (local.set $c (i32.add (local.get $c) (i32.const 1)))
            (br_if $channel (i32.lt_u (local.get $c) (local.get $Cp))))
          (v128.store (local.get $lwsq)
            (f32x4.mul
              (v128.load (i32.add (local.get $stage_lw) (i32.mul (local.get $k) (local.get $plane))))
              (f32x4.splat (f32.const 1.4426950408889634))))
          (v128.store offset=16 (local.get $lwsq) (call $demote4 (local.get $sqlo) (local.get $sqhi)))
          (local.set $total (f64x2.add (local.get $total) (f64x2.add (local.get $sqlo) (local.get $sqhi))))
          (local.set $lwsq (i32.add (local.get $lwsq) (i32.const 32)))
          (local.set $k (i32.add (local.get $k) (i32.const 1)))
          (br_if $component (i32.lt_u (local.get $k) (local.get $K))))
        ;; the staging planes advance one group
        (local.set $stage_m (i32.add (local.get $stage_m) (i32.const 16)))
        (local.set $stage_lw (i32.add (local.get $stage_lw) (i32.const 16)))
        (local.set $stage_x (i32.add (local.get $stage_x) (i32.const 16)))
        (local.set $g (i32.add (local.get $g) (i32.const 1)))
        (br $group)))
    (f64.add (f64x2.extract_lane 0 (local.get $total)) (f64x2.extract_lane 1 (local.get $total))))

  ;; lanes 2–3 of an f32x4 moved to lanes 0–1 (for f64x2.promote_low_f32x4)
  (func $high_half (param $v v128) (result v128)
    (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))

  ;; two f64x2 rounded to one f32x4: [lo0, lo1, hi0, hi1]
  (func $demote4 (param $lo v128) (param $hi v128) (result v128)
    (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
      (f32x4.demote_f64x2_zero (local.get $lo)) (f32x4.demote_f64x2_zero (local.get $hi))))
)
