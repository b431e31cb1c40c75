[Fri Dec  4 02:33:30 2026] oomlab: s01-cgroupfs-burstable begin 7c6fd879cdab
[Fri Dec  4 02:33:30 2026] cni0: port 1(veth0766fe38) entered blocking state
[Fri Dec  4 02:33:30 2026] cni0: port 1(veth0766fe38) entered disabled state
[Fri Dec  4 02:33:30 2026] veth0766fe38: entered allmulticast mode
[Fri Dec  4 02:33:30 2026] veth0766fe38: entered promiscuous mode
[Fri Dec  4 02:33:30 2026] cni0: port 1(veth0766fe38) entered blocking state
[Fri Dec  4 02:33:30 2026] cni0: port 1(veth0766fe38) entered forwarding state
[Fri Dec  4 02:33:31 2026] python3 invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=968
[Fri Dec  4 02:33:31 2026] CPU: 0 UID: 65534 PID: 3164 Comm: python3 Not tainted 6.18.44-fc-v595 #1 PREEMPT(none) 
[Fri Dec  4 02:33:31 2026] Call Trace:
[Fri Dec  4 02:33:31 2026]  <TASK>
[Fri Dec  4 02:33:31 2026]  dump_stack_lvl+0x57/0x80
[Fri Dec  4 02:33:31 2026]  dump_header+0x43/0x1c0
[Fri Dec  4 02:33:31 2026]  oom_kill_process.cold+0x8/0x8a
[Fri Dec  4 02:33:31 2026]  out_of_memory+0x214/0x500
[Fri Dec  4 02:33:31 2026]  mem_cgroup_out_of_memory+0xc0/0x110
[Fri Dec  4 02:33:31 2026]  try_charge_memcg+0x422/0x6f0
[Fri Dec  4 02:33:31 2026]  charge_memcg+0x2f/0x90
[Fri Dec  4 02:33:31 2026]  __mem_cgroup_charge+0x2c/0x90
[Fri Dec  4 02:33:31 2026]  do_anonymous_page+0x33c/0x880
[Fri Dec  4 02:33:31 2026]  ? srso_alias_return_thunk+0x5/0xfbef5
[Fri Dec  4 02:33:31 2026]  ? ___pte_offset_map+0x17/0x100
[Fri Dec  4 02:33:31 2026]  __handle_mm_fault+0xa1e/0xf20
[Fri Dec  4 02:33:31 2026]  handle_mm_fault+0xd0/0x310
[Fri Dec  4 02:33:31 2026]  exc_page_fault+0x176/0x770
[Fri Dec  4 02:33:31 2026]  asm_exc_page_fault+0x22/0x30
[Fri Dec  4 02:33:31 2026] RIP: 0033:0x7fd80e46d54a
[Fri Dec  4 02:33:31 2026] Code: c5 fe 7f 07 c5 fe 7f 47 20 c5 fe 7f 47 40 c5 fe 7f 47 60 c5 f8 77 c3 66 0f 1f 84 00 00 00 00 00 40 0f b6 c6 48 89 d1 48 89 fa <f3> aa 48 89 d0 c5 f8 77 c3 66 66 2e 0f 1f 84 00 00 00 00 00 66 90
[Fri Dec  4 02:33:31 2026] RSP: 002b:00007ffc5c2c2588 EFLAGS: 00010206
[Fri Dec  4 02:33:31 2026] RAX: 0000000000000001 RBX: 0000000000100000 RCX: 0000000000020030
[Fri Dec  4 02:33:31 2026] RDX: 00007fd80a3e8030 RSI: 0000000000000001 RDI: 00007fd80a4c8000
[Fri Dec  4 02:33:31 2026] RBP: 00007fd80a3e8010 R08: 00000000ffffffff R09: 0000000000000000
[Fri Dec  4 02:33:31 2026] R10: 0000000000000022 R11: 0000000000000246 R12: 0000000000a5db00
[Fri Dec  4 02:33:31 2026] R13: 00007fd80e15b080 R14: 00007fd80e1df250 R15: 0000000000a5db00
[Fri Dec  4 02:33:31 2026]  </TASK>
[Fri Dec  4 02:33:31 2026] memory: usage 65536kB, limit 65536kB, failcnt 309
[Fri Dec  4 02:33:31 2026] memory+swap: usage 65536kB, limit 9007199254740988kB, failcnt 0
[Fri Dec  4 02:33:31 2026] kmem: usage 216kB, limit 9007199254740988kB, failcnt 0
[Fri Dec  4 02:33:31 2026] Memory cgroup stats for /kubepods/burstable/pod1082311d-bbad-4126-8d4f-9585a53c950c/5364b45b8d47e2f8002d36df4fa8cda5b92b80650f84393ba6164202e5b81a66:
[Fri Dec  4 02:33:31 2026] cache 16384
[Fri Dec  4 02:33:31 2026] rss 66871296
[Fri Dec  4 02:33:31 2026] rss_huge 0
[Fri Dec  4 02:33:31 2026] shmem 0
[Fri Dec  4 02:33:31 2026] mapped_file 0
[Fri Dec  4 02:33:31 2026] dirty 0
[Fri Dec  4 02:33:31 2026] writeback 0
[Fri Dec  4 02:33:31 2026] workingset_refault_anon 0
[Fri Dec  4 02:33:31 2026] workingset_refault_file 233
[Fri Dec  4 02:33:31 2026] swap 0
[Fri Dec  4 02:33:31 2026] swapcached 0
[Fri Dec  4 02:33:31 2026] pgpgin 16575
[Fri Dec  4 02:33:31 2026] pgpgout 245
[Fri Dec  4 02:33:31 2026] pgfault 16475
[Fri Dec  4 02:33:31 2026] pgmajfault 3
[Fri Dec  4 02:33:31 2026] inactive_anon 66756608
[Fri Dec  4 02:33:31 2026] active_anon 4096
[Fri Dec  4 02:33:31 2026] inactive_file 8192
[Fri Dec  4 02:33:31 2026] active_file 4096
[Fri Dec  4 02:33:31 2026] unevictable 0
[Fri Dec  4 02:33:31 2026] hierarchical_memory_limit 67108864
[Fri Dec  4 02:33:31 2026] hierarchical_memsw_limit 9223372036854771712
[Fri Dec  4 02:33:31 2026] total_cache 16384
[Fri Dec  4 02:33:31 2026] total_rss 66871296
[Fri Dec  4 02:33:31 2026] total_rss_huge 0
[Fri Dec  4 02:33:31 2026] total_shmem 0
[Fri Dec  4 02:33:31 2026] total_mapped_file 0
[Fri Dec  4 02:33:31 2026] total_dirty 0
[Fri Dec  4 02:33:31 2026] total_writeback 0
[Fri Dec  4 02:33:31 2026] total_workingset_refault_anon 0
[Fri Dec  4 02:33:31 2026] total_workingset_refault_file 233
[Fri Dec  4 02:33:31 2026] total_swap 0
[Fri Dec  4 02:33:31 2026] total_swapcached 0
[Fri Dec  4 02:33:31 2026] total_pgpgin 16575
[Fri Dec  4 02:33:31 2026] total_pgpgout 245
[Fri Dec  4 02:33:31 2026] total_pgfault 16475
[Fri Dec  4 02:33:31 2026] total_pgmajfault 3
[Fri Dec  4 02:33:31 2026] total_inactive_anon 66756608
[Fri Dec  4 02:33:31 2026] total_active_anon 4096
[Fri Dec  4 02:33:31 2026] total_inactive_file 8192
[Fri Dec  4 02:33:31 2026] total_active_file 4096
[Fri Dec  4 02:33:31 2026] total_unevictable 0
[Fri Dec  4 02:33:31 2026] Tasks state (memory values in pages):
[Fri Dec  4 02:33:31 2026] [  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes swapents oom_score_adj name
[Fri Dec  4 02:33:31 2026] [   3164] 65534  3164    19010    17652    16288     1364         0   188416        0           968 python3
[Fri Dec  4 02:33:31 2026] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0,oom_memcg=/kubepods/burstable/pod1082311d-bbad-4126-8d4f-9585a53c950c/5364b45b8d47e2f8002d36df4fa8cda5b92b80650f84393ba6164202e5b81a66,task_memcg=/kubepods/burstable/pod1082311d-bbad-4126-8d4f-9585a53c950c/5364b45b8d47e2f8002d36df4fa8cda5b92b80650f84393ba6164202e5b81a66,task=python3,pid=3164,uid=65534
[Fri Dec  4 02:33:31 2026] Memory cgroup out of memory: Killed process 3164 (python3) total-vm:76040kB, anon-rss:65152kB, file-rss:5456kB, shmem-rss:0kB, UID:65534 pgtables:184kB oom_score_adj:968
[Fri Dec  4 02:33:31 2026] python3[3165]: segfault at 0 ip 00007f7a26c3f219 sp 00007ffc026e7728 error 4 in libc.so.6[156219,7f7a26b0f000+156000] likely on CPU 1 (core 1, socket 0)
[Fri Dec  4 02:33:31 2026] Code: fe 7f 5c 17 e1 c5 f8 77 c3 0f 1f 84 00 00 00 00 00 89 f8 48 89 fa c5 f9 ef c0 25 ff 0f 00 00 3d e0 0f 00 00 0f 87 37 01 00 00 <c5> fd 74 0f c5 fd d7 c1 85 c0 74 5b f3 0f bc c0 c5 f8 77 c3 0f 1f
[Fri Dec  4 02:33:31 2026] cni0: port 1(veth0766fe38) entered disabled state
[Fri Dec  4 02:33:31 2026] veth0766fe38 (unregistering): left allmulticast mode
[Fri Dec  4 02:33:31 2026] veth0766fe38 (unregistering): left promiscuous mode
[Fri Dec  4 02:33:31 2026] cni0: port 1(veth0766fe38) entered disabled state
[Fri Dec  4 02:33:31 2026] oomlab: s01-cgroupfs-burstable end 7c6fd879cdab
